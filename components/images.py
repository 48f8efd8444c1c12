"""Container images the components declare. Override the registry/tag at compile time with env vars."""

import os

REGISTRY = os.environ.get("HISTOSYNTH_IMAGE_REGISTRY", "ghcr.io/histosynth")
TAG = os.environ.get("HISTOSYNTH_IMAGE_TAG", "0.1.0")

# One image for every step, the CPU image plus torchvision that `make images` builds: set by
# `histosynth pipeline run --runner docker` (local container runs; no CUDA image is built here).
STEP_IMAGE = os.environ.get("HISTOSYNTH_STEP_IMAGE", "")
CPU_IMAGE = STEP_IMAGE or f"{REGISTRY}/histosynth-python-cpu:{TAG}"  # light steps: data, register, export
GPU_IMAGE = STEP_IMAGE or f"{REGISTRY}/histosynth-python-cuda:{TAG}"  # training and large evaluations
SERVING_IMAGE = f"{REGISTRY}/histosynth-triton:{TAG}"  # Triton + production model repository (k8s pulls it from MinIO instead)
MLFLOW_IMAGE = f"{REGISTRY}/histosynth-mlflow:{TAG}"  # tracking server of the k8s manifests

# Where each image is built from (repository root as context; tests/docker lints them and checks this map).
DOCKERFILES = {
    CPU_IMAGE: "docker/Dockerfile.cpu",
    GPU_IMAGE: "docker/Dockerfile.cuda",
    SERVING_IMAGE: "docker/Dockerfile.triton",
    MLFLOW_IMAGE: "docker/Dockerfile.mlflow",
}
