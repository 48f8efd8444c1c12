"""Container images the components declare. Override the registry/tag at compile time with env vars."""

import os

REGISTRY = os.environ.get("HISTOSYNTH_IMAGE_REGISTRY", "ghcr.io/histosynth")
TAG = os.environ.get("HISTOSYNTH_IMAGE_TAG", "0.1.0")

CPU_IMAGE = f"{REGISTRY}/histosynth-python-cpu:{TAG}"  # light steps: data, register, export
GPU_IMAGE = f"{REGISTRY}/histosynth-python-cuda:{TAG}"  # training and large evaluations
