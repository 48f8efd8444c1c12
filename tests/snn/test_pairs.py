"""Pair builder: levels and labels, no leakage across splits, determinism, augmentation, stale pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from histosynth.data.store import PatchStore
from histosynth.errors import DataError
from histosynth.config.snn import load_snn_config
from histosynth.snn.pairs import PairSet, augment, build_pairs, make_pairs

pytestmark = pytest.mark.unit


def test_levels_labels_and_slides(pairs_dir, splits_root):
    for split in ("train", "val", "test"):
        table = np.load(pairs_dir / split / "patch.npy")
        records = PatchStore(splits_root / split).records
        slide = np.array([r["slide"] for r in records])
        n = len(records)
        assert len(table) == 3 * n  # per_item=1: one pair of each level per patch
        assert table["a"].max() < n and table["b"].max() < n and table["a"].min() >= 0
        lv0, lv1, lv2 = (table[table["level"] == k] for k in range(3))
        assert (lv0["label"] == 1).all() and (lv0["a"] == lv0["b"]).all()
        assert (lv1["label"] == 0).all() and (lv1["a"] != lv1["b"]).all() and (slide[lv1["a"]] == slide[lv1["b"]]).all()
        assert (lv2["label"] == 0).all() and (slide[lv2["a"]] != slide[lv2["b"]]).all()
        # both sides augmented independently, also for the similar pairs
        assert (lv0["seed_a"] != lv0["seed_b"]).all()
        assert (np.abs(table["aug_a"][:, 0]) <= 0.15 + 1e-6).all() and ((table["aug_a"][:, 1] >= 0.75 - 1e-6) & (table["aug_a"][:, 1] <= 1.25 + 1e-6)).all()


def test_no_leakage_between_splits(pairs_dir, splits_root):
    manifest = json.loads((pairs_dir / "manifest.json").read_text())
    seen = {}
    for split in ("train", "val", "test"):
        store = PatchStore(splits_root / split)
        assert manifest["splits"][split]["store_manifest_hash"] == store.manifest_hash
        table = np.load(pairs_dir / split / "patch.npy")
        recs = store.records
        used = {(recs[i]["slide"], recs[i]["region"]) for i in np.concatenate([table["a"], table["b"]])}
        seen[split] = used
        # mosaics: built only from this split's patches
        meta = [json.loads(line) for line in (pairs_dir / split / "mosaics.jsonl").read_text().splitlines()]
        assert {(m["slide"], m["region"]) for m in meta} <= {(r["slide"], r["region"]) for r in recs}
    assert not seen["train"] & seen["test"] and not seen["train"] & seen["val"] and not seen["val"] & seen["test"]


def test_deterministic_by_seed(splits_root, pairs_dir, tmp_path):
    cfg = load_snn_config(None, ["pairs.min_tiles=2", "pairs.stage1_per_item=2"])
    build_pairs(cfg.pairs, root=str(splits_root), out=str(tmp_path / "again"))
    for f in ("train/patch.npy", "train/stage1.npy", "train/mosaics.npy", "test/patch.npy"):
        assert (tmp_path / "again" / f).read_bytes() == (pairs_dir / f).read_bytes(), f
    other = load_snn_config(None, ["pairs.min_tiles=2", "pairs.seed=7"])
    build_pairs(other.pairs, root=str(splits_root), out=str(tmp_path / "seed7"))
    assert (tmp_path / "seed7" / "train/patch.npy").read_bytes() != (pairs_dir / "train/patch.npy").read_bytes()


def test_mosaics_and_stage1_pairs(pairs_dir):
    mosaics = np.load(pairs_dir / "train" / "mosaics.npy")
    assert mosaics.shape == (12, 256, 256, 3) and mosaics.dtype == np.uint8  # 6 slides x 2 regions, 2x2 tiles each
    t1 = np.load(pairs_dir / "train" / "stage1.npy")
    assert len(t1) == 3 * 2 * 12 and t1["a"].max() < 12


def test_make_pairs_fallbacks():
    rng = np.random.default_rng(0)
    # one image per slide: within-slide negatives fall back to the same class on another slide
    p = make_pairs(["s1", "s2", "s3", "s4"], ["a", "a", "b", "b"], 2, rng)
    lv1 = p[p[:, 3] == 1]
    cls = np.array(["a", "a", "b", "b"])
    assert (lv1[:, 0] != lv1[:, 1]).all() and (cls[lv1[:, 0]] == cls[lv1[:, 1]]).all()
    with pytest.raises(DataError, match="too few"):
        make_pairs(["s1"], ["a"], 1, rng)


def test_augment_is_deterministic_and_bounded():
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    params = torch.tensor([[0.1, 1.2, 0.05], [-0.1, 0.8, 0.0], [0.0, 1.0, 0.0]])
    seeds = np.array([1, 2, 3], np.uint32)
    a, b = augment(x, params, seeds), augment(x, params, seeds)
    assert torch.equal(a, b) and a.min() >= -1 and a.max() <= 1
    assert torch.allclose(augment(x[2:], params[2:], seeds[2:]), x[2:])  # identity parameters
    assert not torch.equal(augment(x, params, np.array([9, 2, 3], np.uint32))[0], a[0])


def test_pairset_batches_and_stale_store(pairs_dir, splits_root, tmp_path):
    ps = PairSet(pairs_dir, "train", "patch", str(splits_root))
    xa, xb, y = ps.batch(np.arange(6), 32, torch.device("cpu"))
    assert xa.shape == (6, 3, 32, 32) and xb.shape == xa.shape and y.tolist() == ps.labels[:6].tolist()
    assert xa.min() >= -1 and xa.max() <= 1
    # pairs built from another version of the store are refused
    import shutil

    stale = tmp_path / "splits"
    shutil.copytree(splits_root, stale)
    m = json.loads((stale / "train" / "manifest.json").read_text())
    m["provenance"]["edited"] = True
    (stale / "train" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DataError, match="another version"):
        PairSet(pairs_dir, "train", "patch", str(stale))
    with pytest.raises(DataError, match="snn pairs"):
        PairSet(tmp_path / "nothing", "train")
