"""Fixtures for MASAN tests: tiny specs (8 feature maps) and a small 64-px, two-class synthetic store."""

from __future__ import annotations

import numpy as np
import pytest

from histosynth.data.store import Patch, write_store

CLASSES = ["blood_smear", "he_skin"]


@pytest.fixture
def tiny_spec():
    """``tiny_spec(image_size=64, num_classes=2)`` -> a MASAN spec with 8 feature maps and latent 16
    (test modules cannot import conftest)."""

    def make(image_size: int = 64, num_classes: int = 2) -> dict:
        return {"arch": "masan", "image_size": image_size, "latent_dim": 16, "g_features": 8, "d_features": 8, "channels": 3, "num_classes": num_classes, "spectral_norm": True}

    return make


@pytest.fixture(scope="session")
def store_root(tmp_path_factory):
    """``<root>/train``: 32 patches of 64x64: pale patches with dark round cells, and pink striped ones."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]

    def patches():
        for i in range(32):
            img = np.empty((64, 64, 3), np.float32)
            if i % 2 == 0:
                img[:] = (225, 205, 215)
                for _ in range(3):
                    cy, cx = rng.integers(0, 64, 2)
                    img[(yy - cy) ** 2 + (xx - cx) ** 2 < 49] = (110, 60, 150)
            else:
                img[:] = (230, 160, 190)
                img[(yy // 6) % 2 == 0] = (150, 80, 140)
            img += rng.normal(0, 10, img.shape)
            yield Patch(np.clip(img, 0, 255).astype(np.uint8), CLASSES[i % 2], {"source": "synthetic", "slide": f"s{i % 3}", "x": i, "y": 0})

    root = tmp_path_factory.mktemp("masan-splits")
    write_store(root / "train", patches(), classes=CLASSES, provenance={"kind": "synthetic test store"})
    return root


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
