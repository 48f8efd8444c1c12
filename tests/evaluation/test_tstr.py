"""TSTR: group folds without leaks, a synthetic set that *is* real data agrees with real-only, shuffled labels
score at chance, unconditional generators and missing weights fail clearly."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from histosynth.evaluation.downstream import TstrConfig, build_classifier, make_folds, run_tstr
from histosynth.evaluation.downstream.tstr import real_pool, tstr_for_bundle
from histosynth.errors import HistosynthError

from .conftest import FAST_TSTR, colour_patches

pytestmark = pytest.mark.unit


def pool(n: int = 36):
    from histosynth.data.split import group_key

    imgs, labels, records = colour_patches({"a": n, "b": n})
    return imgs, labels, np.array([group_key(r, "region") for r in records])


def test_folds_keep_source_groups_apart():
    _, labels, groups = pool()
    folds, info = make_folds(labels, groups, 3, seed=0)
    assert info["method"].startswith("stratified-group") and len(folds) == 3
    seen = np.concatenate([te for _, te in folds])
    assert sorted(seen.tolist()) == list(range(len(labels)))  # every patch tested exactly once
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])  # no slide/region on both sides
        assert set(labels[te]) == {0, 1}
    few, info2 = make_folds(labels, np.array(["g1", "g2"] * (len(labels) // 2)), 3, seed=0)
    assert info2["method"].startswith("stratified (no grouping") and "may fall in train and test" in info2["notes"][0]


def test_synthetic_equal_to_real_agrees_with_real_only_and_is_accurate():
    imgs, labels, groups = pool()

    def copy_of_real(train_idx, counts, fold):  # "synthetic" = the real patches of the other folds
        return imgs[train_idx], labels[train_idx]

    cfg = TstrConfig.from_dict({**FAST_TSTR, "device": "cpu"})
    res = run_tstr(imgs, labels, ["a", "b"], copy_of_real, cfg, groups=groups)
    real, synth, both = (res["settings"][s] for s in ("real", "synthetic", "real+synthetic"))
    assert real["accuracy"]["mean"] >= 0.9 and both["accuracy"]["mean"] >= 0.9
    # identical training data, seed and order: identical classifiers, fold by fold
    assert [f["accuracy"] for f in synth["folds"]] == [f["accuracy"] for f in real["folds"]]
    assert synth["f1_macro"] == real["f1_macro"] and set(synth["f1_per_class"]) == {"a", "b"}
    assert [sum(c.values()) for c in res["synthetic_class_counts"]] == [f["n_train"] for f in real["folds"]]  # matched sizes
    assert res["classifier"]["arch"] == "resnet18" and res["classifier"]["init"] == "random"
    assert 0 <= real["accuracy"]["std"] <= 0.1


def test_shuffled_labels_score_at_chance():
    imgs, labels, groups = pool(48)
    shuffled = np.random.default_rng(0).permutation(labels)
    cfg = TstrConfig.from_dict({**FAST_TSTR, "settings": "real", "device": "cpu"})
    res = run_tstr(imgs, shuffled, ["a", "b"], None, cfg, groups=groups)
    acc = res["settings"]["real"]["accuracy"]["mean"]
    assert abs(acc - 0.5) < 0.2, acc  # 2 balanced classes, ~32 test patches per fold


def test_generator_tstr_and_unconditional_refusal(setup):
    cfg = TstrConfig.from_dict({**FAST_TSTR, "epochs": 1, "folds": 2, "device": "cpu", "n_synth_per_class": 8})
    res = tstr_for_bundle(setup["cond"], setup["splits"], cfg)
    assert res["n_real"] == 88 and res["synthetic_class_counts"] == [{"a": 8, "b": 8}] * 2
    assert all(f["n_train"] == 16 for f in res["settings"]["synthetic"]["folds"])
    assert len(res["real_pool"]["stores"]) == 2  # train + test (no val here)
    with pytest.raises(HistosynthError, match="class-conditional generator") as e:
        tstr_for_bundle(setup["uncond"], setup["splits"], cfg)
    assert "data.conditional=true" in e.value.hint
    imgs, labels, groups, classes, _ = real_pool(setup["splits"], ["train", "test"], max_real=40, seed=0)
    assert len(labels) == 40 and np.bincount(labels).tolist() == [20, 20] and classes == ["a", "b"]


def test_backbone_freezing_and_weight_rules(monkeypatch, tmp_path):
    model, desc = build_classifier("resnet18", 3, init="random", trainable_layers=4, head_hidden=32)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(n.startswith(("trunk.layer4.1.", "head.")) for n in trainable)  # the last block's conv1, bn1, conv2, bn2
    assert desc["trainable_layers"] == 4 and desc["total_layers"] == 40 and model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    model.train()
    assert not model.trunk.bn1.training and model.trunk.layer4[1].bn2.training  # frozen BN stays in eval mode
    monkeypatch.setenv("HISTOSYNTH_OFFLINE", "1")
    monkeypatch.delenv("HISTOSYNTH_RESNET", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(HistosynthError, match="not available offline") as e:
        build_classifier("resnet152", 2)
    assert "--tstr-init random" in e.value.hint and "resnet152-394f9c45.pth" in e.value.hint
    bad = tmp_path / "resnet18.pth"
    bad.write_bytes(b"not weights")
    with pytest.raises(HistosynthError, match="is not torchvision's"):
        build_classifier("resnet18", 2, weights=bad)
    with pytest.raises(HistosynthError, match="unknown TSTR backbone"):
        build_classifier("vit", 2)
    with pytest.raises(HistosynthError, match="unknown TSTR option"):
        TstrConfig.from_dict({"epoch": 3})
    with pytest.raises(HistosynthError, match="unknown TSTR setting"):
        TstrConfig.from_dict({"settings": "real,fake"})
