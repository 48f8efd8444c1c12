"""Batches from the patch store (range, resize, flips, class selection, class balancing, resumable shuffling) and DCGAN init."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from histosynth.config import load_config
from histosynth.data.store import Patch, PatchStore, write_store
from histosynth.errors import ConfigError, DataError
from histosynth.gan.train import build_models
from histosynth.gan.train.runs import open_data
from histosynth.data.loader import BatchSource, open_store, resolve_data_root

PRESET = Path(__file__).resolve().parents[2] / "configs" / "dcgan-samples.yaml"


def _source(store, **kw):
    args = {"batch_size": 4, "image_size": 32, "device": torch.device("cpu"), "seed": 0, **kw}
    return BatchSource(store, **args)


@pytest.mark.unit
def test_uint8_to_minus_one_one_and_labels(tmp_path):
    values = [0, 255, 128, 64]
    patches = [Patch(np.full((32, 32, 3), v, np.uint8), ["a", "b"][i % 2]) for i, v in enumerate(values)]
    store = PatchStore(write_store(tmp_path / "s", patches))
    src = _source(store)
    x, y = src.batch(torch.arange(4))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    assert x[:, 0, 0, 0].tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1, 64 / 127.5 - 1], abs=1e-6)
    assert y.tolist() == [0, 1, 0, 1] and y.dtype == torch.long
    assert len(src) == 1


@pytest.mark.unit
def test_resize_flips_and_class_selection(store_root, tmp_path):
    store = open_store(str(store_root), "train")
    # 32 px patches trained at 64 px: resized per batch, still in [-1, 1]
    up = _source(store, image_size=64)
    x, _ = up.batch(torch.arange(8))
    assert x.shape == (8, 3, 64, 64) and x.min() >= -1 and x.max() <= 1

    plain = _source(store)
    flipped = _source(store, hflip=True, vflip=True)
    idx = torch.arange(16)
    a, _ = plain.batch(idx)
    b, _ = flipped.batch(idx)
    variants = [a, a.flip(3), a.flip(2), a.flip(2).flip(3)]
    per_image = [[torch.equal(b[i], v[i]) for v in variants] for i in range(16)]
    assert all(any(m) for m in per_image), "a flipped image must be the original under some flip"
    assert sum(not m[0] for m in per_image) > 0, "flips are on but nothing was flipped"

    turned = _source(store, transpose=True)
    c, _ = turned.batch(idx)
    swapped = [torch.equal(c[i], a[i].transpose(1, 2)) and not torch.equal(c[i], a[i]) for i in range(16)]
    assert all(swapped[i] or torch.equal(c[i], a[i]) for i in range(16)), "a transposed image must be the original, transposed or not"
    assert 0 < sum(swapped) < 16, "transpose is drawn per image"
    every = _source(store, hflip=True, vflip=True, transpose=True)
    seen = set()
    for _ in range(40):
        d, _ = every.batch(torch.zeros(16, dtype=torch.long))
        dihedral = [a[0].rot90(k, (1, 2)) for k in range(4)] + [a[0].transpose(1, 2).rot90(k, (1, 2)) for k in range(4)]
        seen |= {next(j for j, v in enumerate(dihedral) if torch.equal(d[i], v)) for i in range(16)}
    assert seen == set(range(8)), "flips + transpose reach all 8 right-angle rotations and reflections"

    only = _source(store, classes=["invasive"])
    assert only.classes == ["invasive"] and only.n == 24 and set(only.labels.tolist()) == {0}
    with pytest.raises(DataError, match="not in the store"):
        _source(store, classes=["normal"])


@pytest.mark.unit
@pytest.mark.parametrize("class_balance", [0.0, 0.5])
def test_shuffling_state_round_trip(store_root, class_balance):
    src = _source(open_store(str(store_root), "train"), hflip=True, class_balance=class_balance)
    state = src.state_dict()
    first = src.permutation()
    xa, _ = src.batch(first[:4])
    src.load_state_dict(state)
    assert torch.equal(src.permutation(), first)
    xb, _ = src.batch(first[:4])
    assert torch.equal(xa, xb)
    assert not torch.equal(src.permutation(), first)  # the next epoch gets a new shuffle


@pytest.mark.unit
def test_class_balance_draws_classes_in_proportion_to_a_power_of_their_size(tmp_path):
    counts = {"common": 90, "mid": 30, "rare": 10}  # 130 patches, each one value so a draw names its patch
    patches = [Patch(np.full((8, 8, 3), i, np.uint8), c) for i, c in enumerate(c for c, n in counts.items() for _ in range(n))]
    store = PatchStore(write_store(tmp_path / "s", patches))
    natural = _source(store, image_size=8)
    perm = natural.permutation()
    assert sorted(perm.tolist()) == list(range(130))  # 0: a plain shuffle, every patch once
    n = np.array(list(counts.values()), float)
    for b in (0.5, 1.0):
        src = _source(store, image_size=8, class_balance=b)
        draws = torch.cat([src.permutation() for _ in range(200)])  # 200 epochs of 130 draws
        assert len(src.permutation()) == 130 and len(src) == len(natural)  # an epoch keeps its length
        share = np.bincount(src.labels[draws].numpy(), minlength=3) / len(draws)
        want = n ** (1 - b) / (n ** (1 - b)).sum()  # 0.5: 0.52 / 0.30 / 0.17; 1: a third each
        assert share == pytest.approx(want, abs=0.01)
        rare = draws[src.labels[draws] == 2]
        assert set(rare.tolist()) == set(range(120, 130))  # every rare patch is drawn, and only rare patches
    again = _source(store, image_size=8, class_balance=0.5)
    assert torch.equal(again.permutation(), _source(store, image_size=8, class_balance=0.5).permutation())  # seeded
    with pytest.raises(DataError, match=r"class_balance=1.5 is outside \[0, 1\]"):
        _source(store, image_size=8, class_balance=1.5)


@pytest.mark.unit
def test_data_root_and_split_errors(store_root, monkeypatch, tmp_path):
    with pytest.raises(DataError, match="has no split"):
        open_store(str(store_root / "train"), "train")
    monkeypatch.setenv("HISTOSYNTH_DATA", str(tmp_path / "d"))
    assert resolve_data_root("data/splits") == tmp_path / "d" / "splits"
    assert resolve_data_root(str(store_root)) == store_root


@pytest.mark.numerics
def test_dcgan_initialisation_statistics():
    """N(0, 0.02) conv weights, N(1, 0.02) batch-norm scales, zero biases (DCGAN paper), 64 px, 64 maps."""
    cfg = load_config(None, ["data.image_size=64", "model.upsample=deconv"])
    torch.manual_seed(0)
    G, D = build_models(cfg, 4, torch.device("cpu"))
    for net in (G, D):
        convs = [m.weight for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
        w = torch.cat([c.flatten() for c in convs])
        assert w.std().item() == pytest.approx(0.02, rel=0.02) and abs(w.mean().item()) < 1e-3
        bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        scale = torch.cat([b.weight.flatten() for b in bns])
        assert scale.mean().item() == pytest.approx(1.0, abs=0.005) and scale.std().item() == pytest.approx(0.02, rel=0.15)
        assert all(b.bias.abs().max() == 0 for b in bns)
    # conditional D: the projection embedding is on the DCGAN scale too (nn.Embedding's default is N(0, 1))
    assert D.embed.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert sum(p.numel() for p in G.parameters()) > 3_000_000  # the full-width 64 px DCGAN generator


@pytest.mark.unit
def test_class_balance_reaches_the_trainers_batches_and_is_checked(store_root):
    cfg = load_config(PRESET, [f"data.root={store_root}", "data.class_balance=1.0"])
    _, source = open_data(cfg, torch.device("cpu"))
    assert source.class_balance == 1.0
    with pytest.raises(ConfigError, match=r"data.class_balance=-0.5 is outside \[0, 1\]"):
        load_config(PRESET, ["data.class_balance=-0.5"])
