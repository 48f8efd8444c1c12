from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

from histosynth.data.split import REPORT, SPLITS, check_no_leakage, split_store
from histosynth.data.store import Patch, PatchStore, write_store
from histosynth.errors import DataError

pytestmark = pytest.mark.unit


def make_store(path, layout: dict[str, dict[str, int]], regions_per_slide: int = 6, seed: int = 0):
    """layout: class -> {slide: n_patches}; patches are spread over ``regions_per_slide`` regions."""
    rng = np.random.default_rng(seed)
    patches = []
    for cls, slides in layout.items():
        for slide, n in slides.items():
            for i in range(n):
                img = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
                patches.append(Patch(img, cls, {"source": f"{slide}.png", "slide": slide, "region": i % regions_per_slide, "x": i * 8, "y": 0, "level": 0}))
    write_store(path, patches)
    return PatchStore(path)


def independent_leak_check(out):
    """Recompute from the written stores, without the library's checker."""
    report = json.loads((out / REPORT).read_text())
    where_group, where_slide = defaultdict(set), defaultdict(set)
    train_classes = set()
    for s in SPLITS:
        if not (out / s / "manifest.json").exists():
            continue
        for r in PatchStore(out / s).records:
            where_slide[r["slide"]].add(s)
            where_group[(r["slide"], r["region"])].add(s)
            if s == "train":
                train_classes.add(r["class"])
    assert all(len(v) == 1 for v in where_group.values()), "a (slide, region) group is in two splits"
    for cls, by in report["grouping"].items():
        if by == "slide":
            slides = {r["slide"] for s in SPLITS if (out / s / "manifest.json").exists() for r in PatchStore(out / s).records if r["class"] == cls}
            assert all(len(where_slide[sl]) == 1 for sl in slides), f"a slide of {cls} is in two splits"
    assert train_classes == set(report["classes"]), "every class appears in train"
    return report


def test_region_grouping_when_few_slides(tmp_path):
    make_store(tmp_path / "p", {"a": {"a/s1": 60, "a/s2": 40}, "b": {"b/s1": 50}}, regions_per_slide=10)
    r = split_store(tmp_path / "p", tmp_path / "s", val=0.2, test=0.2, seed=0, progress=False)
    assert r["grouping"] == {"a": "slide+region", "b": "slide+region"}
    rep = independent_leak_check(tmp_path / "s")
    # slides are shared between splits (only regions are exclusive) and all patches are accounted for
    assert sum(rep["totals"].values()) == 150
    assert all(rep["totals"][s] > 0 for s in SPLITS)


def test_slide_grouping_with_three_or_more_slides(tmp_path):
    layout = {"a": {f"a/s{i}": 20 + i for i in range(8)}, "b": {f"b/s{i}": 15 for i in range(3)}, "c": {"c/s0": 30, "c/s1": 10}}
    make_store(tmp_path / "p", layout)
    r = split_store(tmp_path / "p", tmp_path / "s", seed=3, progress=False)
    assert r["grouping"] == {"a": "slide", "b": "slide", "c": "slide+region"}
    rep = independent_leak_check(tmp_path / "s")
    # with 3 slides class b gets one slide in each split
    assert rep["groups"]["train"]["b"] == rep["groups"]["val"]["b"] == rep["groups"]["test"]["b"] == 1
    assert check_no_leakage(tmp_path / "s")["groups"] == 8 + 3 + 2 * 6


def test_split_fractions_are_approximately_met(tmp_path):
    make_store(tmp_path / "p", {"a": {f"a/s{i}": 10 for i in range(40)}})
    r = split_store(tmp_path / "p", tmp_path / "s", val=0.15, test=0.15, progress=False)
    assert r["totals"] == {"train": 280, "val": 60, "test": 60}


def test_deterministic_for_a_seed_and_seed_matters(tmp_path):
    layout = {"a": {f"a/s{i}": 10 for i in range(12)}, "b": {"b/x": 80}}
    make_store(tmp_path / "p", layout, regions_per_slide=16)

    def assignment(out):
        return {s: sorted((r["slide"], r["region"], r["x"]) for r in PatchStore(out / s).records) for s in SPLITS}

    split_store(tmp_path / "p", tmp_path / "s1", seed=0, progress=False)
    split_store(tmp_path / "p", tmp_path / "s2", seed=0, progress=False)
    split_store(tmp_path / "p", tmp_path / "s3", seed=1, progress=False)
    assert assignment(tmp_path / "s1") == assignment(tmp_path / "s2")
    assert (tmp_path / "s1" / "train" / "images-00000.npy").read_bytes() == (tmp_path / "s2" / "train" / "images-00000.npy").read_bytes()
    assert assignment(tmp_path / "s1") != assignment(tmp_path / "s3")


def test_splits_keep_pixels_labels_and_class_list(tmp_path):
    src = make_store(tmp_path / "p", {"a": {"a/s": 30}, "b": {"b/s": 30}, "c": {"c/s": 30}})
    split_store(tmp_path / "p", tmp_path / "s", progress=False)
    for s in SPLITS:
        st = PatchStore(tmp_path / "s" / s)
        assert st.classes == src.classes  # label ids agree across splits
        for img, lab, rec in zip(st.images, st.labels, st.records):
            i = rec["src_index"]
            np.testing.assert_array_equal(img, src.images[i])
            assert lab == src.labels[i] and rec["class"] == src.classes[lab]


def test_slide_shared_by_classes_stays_in_one_split(tmp_path):
    """PatchCamelyon-like: one WSI holds normal and tumour patches; the slide must not straddle splits."""
    layout = {"normal": {f"wsi{i}": 10 for i in range(10)}, "tumour": {f"wsi{i}": 5 for i in range(0, 10, 2)}}
    make_store(tmp_path / "p", layout)
    split_store(tmp_path / "p", tmp_path / "s", seed=5, progress=False)
    where = defaultdict(set)
    for s in SPLITS:
        for r in PatchStore(tmp_path / "s" / s).records:
            where[r["slide"]].add(s)
    assert all(len(v) == 1 for v in where.values())


def test_check_detects_leakage(tmp_path):
    make_store(tmp_path / "p", {"a": {f"a/s{i}": 10 for i in range(5)}})
    split_store(tmp_path / "p", tmp_path / "s", progress=False)
    train = PatchStore(tmp_path / "s" / "train")
    val_rec = PatchStore(tmp_path / "s" / "val").records[0]
    leaked = [Patch(np.array(im), "a", {k: v for k, v in r.items() if k != "class"}) for im, r in zip(train.images, train.records)]
    leaked.append(Patch(np.zeros((8, 8, 3), np.uint8), "a", {k: v for k, v in val_rec.items() if k != "class"}))
    write_store(tmp_path / "s" / "train", leaked, classes=train.classes)
    with pytest.raises(DataError, match="leakage"):
        check_no_leakage(tmp_path / "s")


def test_too_few_groups_and_bad_fractions(tmp_path):
    make_store(tmp_path / "p", {"a": {"a/s": 4}}, regions_per_slide=1)
    with pytest.raises(DataError, match="would be empty"):
        split_store(tmp_path / "p", tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()
    r = split_store(tmp_path / "p", tmp_path / "s", val=0, test=0, progress=False)
    assert r["totals"] == {"train": 4, "val": 0, "test": 0}
    with pytest.raises(DataError, match="fractions"):
        split_store(tmp_path / "p", tmp_path / "s", val=0.6, test=0.5, progress=False)
    with pytest.raises(DataError, match="no patch store"):
        split_store(tmp_path / "nothing", tmp_path / "s2", progress=False)
