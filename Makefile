# histosynth: `make demo` (set up + run the main job locally), `make test` (set up + run the suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
export PATH := $(CURDIR)/$(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
# Downloads (sample wheels, weights) shared by test runs.
export HISTOSYNTH_TEST_CACHE ?= $(CURDIR)/.histosynth/test-cache
PYTEST_ARGS ?=
# CPU=1: install the CPU-only torch build from PyTorch's index first (~2.3 GB venv instead of ~7 GB of CUDA wheels).
CPU ?=
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_PINS := $(shell grep -oE '"torch(vision)?==[0-9.]+"' pyproject.toml | tr -d '"')

.PHONY: setup demo data train test test-fast test-integration bench images clean

$(STAMP): pyproject.toml
	$(PYTHON) scripts/check_prereqs.py --venv $(VENV) $(if $(CPU),--cpu)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip setuptools wheel
	$(if $(CPU),$(BIN)/python -m pip install --index-url $(TORCH_CPU_INDEX) $(TORCH_PINS))
	$(BIN)/python -m pip install -e '.[test,metrics-ref,kfp,serve]'
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

## The main job on the embedded default: sample data -> patches -> splits (DVC) -> pipeline -> serve -> synth.
demo: setup
	$(BIN)/python scripts/demo.py

## Versioned data only (DVC stages from dvc.yaml + params.yaml).
data: setup
	dvc repro

train: data
	histosynth train --config configs/dcgan-samples.yaml

## The whole suite, as CI runs it (no GPU needed). Each run lists its 15 slowest tests; selecting nothing fails.
RUN_PYTEST := PYTEST=$(BIN)/pytest scripts/run_pytest.sh
test: setup
	$(RUN_PYTEST) $(PYTEST_ARGS)

## Pure-library and numerical tests, without the slow ones (> ~30 s each).
test-fast: setup
	$(RUN_PYTEST) -m "(unit or numerics) and not slow" $(PYTEST_ARGS)

test-integration: setup
	$(RUN_PYTEST) -m integration $(PYTEST_ARGS)

## The CPU component image, built for real with podman on a debootstrap base (root; apt-get install podman buildah
## debootstrap runc). Not part of `make test`: ~13-22 min on 2 cores. Then: HISTOSYNTH_IMAGE_TESTS=1 pytest tests/docker
images: setup
	docker/build-local.sh

bench: setup
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/metrics_speed.py

clean:
	rm -rf .histosynth data/raw data/patches data/splits
