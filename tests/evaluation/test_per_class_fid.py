"""Per-class FID of class-conditional generators: each class's fakes against that class's real patches, from the
same features as the overall FID; small classes give a note, unconditional generators none of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from histosynth.evaluation import metrics as M
from histosynth.evaluation.suite import class_allocation, evaluate_generator, fake_features, open_split

pytestmark = pytest.mark.unit


def test_equals_the_fid_of_each_class_subset(setup, pixel_extractor):
    from histosynth.evaluation.features import get_extractor
    from histosynth.gan.bundle import load_generator

    rec = evaluate_generator(setup["cond"], setup["splits"], metrics="fid,kid", extractor=pixel_extractor, device="cpu", n_fake=30, seed=3, metric_options={"kid_subsets": 5})
    # the same features computed here, step by step, then plain FID on each class's rows
    store = open_split(setup["splits"], "test")
    ext = get_extractor(pixel_extractor, torch.device("cpu"))
    real = ext(np.array(store.images))
    gen, meta = load_generator(setup["cond"], torch.device("cpu"))
    ids = class_allocation(store.labels, store.classes, meta["classes"], 30, 3)
    fake, _ = fake_features(gen, meta["spec"], ext, 30, class_ids=ids, seed=3, batch_size=64, device=torch.device("cpu"))
    want = {c: M.fid.compute(real[store.labels == store.classes.index(c)], fake[ids == k])["fid"] for k, c in enumerate(meta["classes"])}
    assert rec["metrics"]["fid/a"] == pytest.approx(want["a"], rel=1e-9) and rec["metrics"]["fid/b"] == pytest.approx(want["b"], rel=1e-9)
    assert rec["metrics"]["fid_class_mean"] == pytest.approx((want["a"] + want["b"]) / 2, rel=1e-9)
    assert rec["metrics"]["fid/a"] != pytest.approx(rec["metrics"]["fid"], rel=1e-6)  # a subset, not the overall FID
    assert any("per-class FID on 15-15 samples per class" in n for n in rec["notes"])


def test_small_classes_are_noted_not_fatal_and_the_switch_turns_it_off(setup, pixel_extractor):
    kw = dict(metrics="fid", extractor=pixel_extractor, device="cpu")
    rec = evaluate_generator(setup["cond"], setup["splits"], n_fake=3, **kw)  # 2 fakes of class a, 1 of class b
    assert rec["fake_class_counts"] == {"a": 2, "b": 1} and "fid/a" in rec["metrics"] and "fid/b" not in rec["metrics"]
    assert rec["metrics"]["fid_class_mean"] == rec["metrics"]["fid/a"]
    assert any("no FID for class 'b': FID needs >= 2 samples per set, got 20 real and 1 fake" in n for n in rec["notes"])
    off = evaluate_generator(setup["cond"], setup["splits"], n_fake=20, per_class_fid=False, **kw)
    assert set(off["metrics"]) == {"fid"}


def test_unconditional_generators_report_no_per_class_fid(setup, pixel_extractor):
    rec = evaluate_generator(setup["uncond"], setup["splits"], metrics="fid", extractor=pixel_extractor, device="cpu", n_fake=20)
    assert set(rec["metrics"]) == {"fid"} and not any("per-class" in n for n in rec["notes"])


def test_class_names_are_made_safe_for_mlflow_keys(tmp_path, pixel_extractor):
    from .conftest import make_bundle, make_store

    make_store(tmp_path / "splits" / "test", {"he+skin": 10, "blood smear?": 10})
    bundle = make_bundle(tmp_path / "g" / "generator.pt", ["he+skin", "blood smear?"], True)
    rec = evaluate_generator(bundle, tmp_path / "splits", metrics="fid", extractor=pixel_extractor, device="cpu", n_fake=10)
    assert {"fid/he_skin", "fid/blood smear_"} <= set(rec["metrics"])
