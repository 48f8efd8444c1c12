"""Fixtures for RL-EO / baseline tests: the training tests' synthetic store and tiny configs, and a small real
frozen similarity network (a seeded random conv encoder + cosine) standing in for the MFT-SNN."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from histosynth.config import load_config
from histosynth.data.store import write_store
from histosynth.gan.rl_eo import CosineSimilarity


def _train_conftest():
    """tests/train/conftest.py as a module (with --import-mode=importlib, tests/ is not on sys.path)."""
    name = "histosynth_test_train_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "train" / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


TC = _train_conftest()
CLASSES = TC.CLASSES
TINY = TC.TINY


def make_similarity(seed: int = 0) -> CosineSimilarity:
    """A fixed random conv encoder (seeded, frozen) + cosine similarity mapped to [0, 1]."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 4, 2, 1),
            torch.nn.Tanh(),
            torch.nn.Conv2d(8, 16, 4, 2, 1),
            torch.nn.AdaptiveAvgPool2d(2),
        )
    return CosineSimilarity(encoder)


@pytest.fixture
def similarity() -> CosineSimilarity:
    return make_similarity()


@pytest.fixture(scope="session")
def store_root(tmp_path_factory):
    """``<root>/train``: 48 synthetic 32x32 patches, 2 classes."""
    root = tmp_path_factory.mktemp("splits")
    write_store(root / "train", TC.synthetic_patches(48), classes=CLASSES, provenance={"kind": "synthetic test store"})
    return root


@pytest.fixture(scope="session")
def lopsided_store_root(tmp_path_factory):
    """``<root>/train``: 43 synthetic 32x32 patches, 32 benign : 11 invasive (an uneven class mix)."""
    root = tmp_path_factory.mktemp("lopsided")
    patches = [p for i, p in enumerate(TC.synthetic_patches(64)) if i % 2 == 0 or i % 6 == 1]
    write_store(root / "train", patches, classes=CLASSES, provenance={"kind": "synthetic test store"})
    return root


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def make_cfg(store_root, tracking_uri, tmp_path):
    """``make_cfg(preset_or_None, "k=v", ...)`` -> a tiny Config on the synthetic store."""
    counter = {"n": 0}

    def make(preset=None, *overrides: str):
        counter["n"] += 1
        base = [f"data.root={store_root}", "data.split=train", f"tracking.tracking_uri={tracking_uri}", f"train.out_dir={tmp_path / ('run%d' % counter['n'])}"]
        return load_config(preset, base + TINY + ["data.hflip=false", "data.vflip=false", "train.sample_every=0", "train.checkpoint_every=0"] + list(overrides))

    return make
