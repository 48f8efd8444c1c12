"""Fixtures for MFT-SNN tests: a tiny synthetic split (2 classes x 3 slides, 32 px patches with real slide /
region / x / y records), its pairs, and one tiny trained bundle (random init, 2 steps)."""

from __future__ import annotations

import numpy as np
import pytest

from histosynth.data.store import Patch, write_store
from histosynth.config.snn import load_snn_config

CLASSES = ["benign", "invasive"]
SIZE = 32
# the same slides appear in every split, with different regions (as `data split` does by slide+region)
REGIONS = {"train": (0, 1), "val": (2,), "test": (3,)}


def synthetic_split(split: str, seed: int = 0):
    rng = np.random.default_rng([seed, list(REGIONS).index(split)])
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for ci, cls in enumerate(CLASSES):
        for s in range(3):
            base = np.array([235, 170, 200] if ci == 0 else [150, 90, 190], np.float32) + 15 * s
            for region in REGIONS[split]:
                for t in range(4):  # 2x2 tiles per region
                    img = np.empty((SIZE, SIZE, 3), np.float32)
                    img[:] = base
                    if ci == 0:
                        for _ in range(3):
                            cy, cx = rng.integers(0, SIZE, 2)
                            img[(yy - cy) ** 2 + (xx - cx) ** 2 < 16] = (90, 40, 120)
                    else:
                        img[((yy + int(rng.integers(0, 8))) // 4) % 2 == 0] = (70, 30, 110)
                    img += rng.normal(0, 10, img.shape)
                    x, y = region * 4 * SIZE + (t % 2) * SIZE, (t // 2) * SIZE
                    rec = {"source": f"{cls}/s{s}.png", "slide": f"{cls}/s{s}", "region": region, "x": int(x), "y": int(y)}
                    yield Patch(np.clip(img, 0, 255).astype(np.uint8), cls, rec)


def write_splits(root):
    for split in REGIONS:
        write_store(root / split, synthetic_split(split), classes=CLASSES, provenance={"kind": "synthetic snn test split", "split": split})
    return root


@pytest.fixture(scope="session")
def splits_root(tmp_path_factory):
    """<root>/{train,val,test}: 48 / 24 / 24 patches of 32 px."""
    return write_splits(tmp_path_factory.mktemp("snn-splits"))


PAIRS_SET = ["pairs.min_tiles=2", "pairs.stage1_per_item=2"]


@pytest.fixture(scope="session")
def pairs_dir(splits_root, tmp_path_factory):
    from histosynth.snn.pairs import build_pairs

    out = tmp_path_factory.mktemp("snn-pairs") / "pairs"
    cfg = load_snn_config(None, PAIRS_SET)
    build_pairs(cfg.pairs, root=str(splits_root), out=str(out))
    return out


@pytest.fixture(scope="session")
def snn_tracking_uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('snn-mlflow') / 'mlflow.db'}"


def tiny(pairs_dir, tracking_uri, out_dir, *extra: str) -> list[str]:
    """Overrides for a seconds-long CPU run: random init, 32 px, batch 4, 2 steps per stage."""
    return [
        f"train.pairs={pairs_dir}",
        f"tracking.tracking_uri={tracking_uri}",
        f"train.out_dir={out_dir}",
        "model.init=random",
        "model.emb_dim=16",
        "model.hidden=32",
        "model.decoder_width=4",
        "stage1.image_size=32",
        "stage2.image_size=32",
        "stage1.max_steps=2",
        "stage2.max_steps=2",
        "train.batch_size=4",
        "train.log_every=1",
        "train.device=cpu",
        *extra,
    ]


@pytest.fixture(scope="session")
def stage1_bundle(pairs_dir, snn_tracking_uri, tmp_path_factory):
    """A stage-1 bundle trained for 2 steps (random init) — enough to exercise every consumer."""
    from histosynth.snn.train import train_snn

    home = tmp_path_factory.mktemp("snn-home")
    with pytest.MonkeyPatch.context() as mp:  # session-scoped: the per-test state folders are not set up yet
        mp.setenv("HISTOSYNTH_HOME", str(home))
        mp.setenv("HISTOSYNTH_CACHE", str(home / "cache"))
        cfg = load_snn_config(None, tiny(pairs_dir, snn_tracking_uri, home / "stage1"))
        return train_snn(cfg, progress=False)


@pytest.fixture
def tiny_overrides():
    """The ``tiny(pairs_dir, tracking_uri, out_dir, *extra)`` helper (test modules cannot import conftest)."""
    return tiny


@pytest.fixture
def pairs_set():
    return list(PAIRS_SET)
