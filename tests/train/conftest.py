"""Fixtures for training tests: a fixed synthetic patch store and tiny configs (32 px, 8 feature maps)."""

from __future__ import annotations

import numpy as np
import pytest

from histosynth.config import load_config
from histosynth.data.store import Patch, write_store

CLASSES = ["benign", "invasive"]


def synthetic_patches(n: int, size: int = 32, seed: int = 0):
    """Two easy-to-tell classes: pink patches with dark dots, purple patches with stripes, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        label = CLASSES[i % 2]
        if label == "benign":
            img = np.empty((size, size, 3), np.float32)
            img[:] = (235, 170, 200)
            for _ in range(4):
                cy, cx = rng.integers(0, size, 2)
                img[(yy - cy) ** 2 + (xx - cx) ** 2 < (size // 8) ** 2] = (90, 40, 120)
        else:
            img = np.empty((size, size, 3), np.float32)
            img[:] = (150, 90, 190)
            phase = rng.integers(0, 8)
            img[((yy + phase) // 4) % 2 == 0] = (70, 30, 110)
        img += rng.normal(0, 12, img.shape)
        yield Patch(np.clip(img, 0, 255).astype(np.uint8), label, {"source": "synthetic", "slide": f"s{i % 3}", "x": i, "y": 0})


@pytest.fixture(scope="session")
def store_root(tmp_path_factory):
    """``<root>/train``: 48 patches of 32x32, 2 classes (what ``data.root`` points at)."""
    root = tmp_path_factory.mktemp("splits")
    write_store(root / "train", synthetic_patches(48), classes=CLASSES, provenance={"kind": "synthetic test store"})
    return root


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory):
    """One SQLite MLflow store for the session (creating the schema costs seconds per database)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


TINY = [
    "data.image_size=32",
    "model.g_features=8",
    "model.d_features=8",
    "model.latent_dim=16",
    "train.batch_size=8",
    "train.epochs=2",
    "train.log_every=2",
    "train.n_samples=8",
    "train.device=cpu",
]


@pytest.fixture
def make_cfg(store_root, tracking_uri, tmp_path):
    """``make_cfg("train.max_steps=4", ...)`` -> a tiny Config on the synthetic store; out_dir under tmp_path."""
    counter = {"n": 0}

    def make(*overrides: str):
        counter["n"] += 1
        out_dir = tmp_path / ("run%d" % counter["n"])
        base = [f"data.root={store_root}", f"tracking.tracking_uri={tracking_uri}", f"train.out_dir={out_dir}"]
        return load_config(None, base + TINY + list(overrides))

    return make
