"""MFT-SNN network: contrastive loss values and gradient signs, freezing, similarity range and symmetry."""

from __future__ import annotations

import math

import pytest
import torch

from histosynth.snn.mft_snn import MFTSNN, contrastive_loss, similarity_from_embeddings
from histosynth.snn.weights import CONV_INDICES

pytestmark = pytest.mark.unit
SPEC = {"emb_dim": 8, "hidden": 16, "decoder_width": 4, "image_size": 32}


@pytest.fixture(scope="module")
def model():
    return MFTSNN(SPEC, seed=0).eval()


def test_contrastive_loss_hand_values():
    e1 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [1.0, 0.0]])
    e2 = torch.tensor([[0.0, 1.0], [0.0, 3.0], [1.0, 1.0], [5.0, 0.0]])  # normalised: d = sqrt2, sqrt2, 2 sin(pi/8), 0
    d = torch.tensor([math.sqrt(2), math.sqrt(2), 2 * math.sin(math.pi / 8), 0.0])
    # similar pairs: mean d^2
    assert contrastive_loss(e1, e2, torch.ones(4), 1.0).item() == pytest.approx(float((d**2).mean()), abs=1e-5)
    # dissimilar, margin 1: only pairs closer than the margin count: (1 - d)^2
    assert contrastive_loss(e1, e2, torch.zeros(4), 1.0).item() == pytest.approx((0 + 0 + (1 - d[2].item()) ** 2 + 1) / 4, abs=1e-5)
    # mixed labels, margin 2
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    want = (2.0 + (2 - math.sqrt(2)) ** 2 + d[2].item() ** 2 + 4.0) / 4
    assert contrastive_loss(e1, e2, y, 2.0).item() == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("label,closer", [(1.0, True), (0.0, False)])
def test_contrastive_gradient_sign(label, closer):
    a = torch.tensor([[1.0, 0.2, -0.3]], requires_grad=True)
    b = torch.tensor([[0.4, 1.0, 0.1]], requires_grad=True)
    loss = contrastive_loss(a, b, torch.tensor([label]), margin=1.5)
    loss.backward()
    with torch.no_grad():
        before = similarity_from_embeddings(a, b).item()
        after = similarity_from_embeddings(a - 0.05 * a.grad, b - 0.05 * b.grad).item()
    assert (after > before) == closer


@pytest.mark.parametrize("k", [0, 3, 8, 13])
def test_freeze_exactly_last_k(model, k):
    names = model.set_trainable(k)
    flags = [c.weight.requires_grad and c.bias.requires_grad for c in model.encoder.convs()]
    assert sum(flags) == k == model.trainable_convs() == len(names)
    assert flags == [False] * (13 - k) + [True] * k  # the last ones
    assert names == [f"encoder.features.{i}" for i in CONV_INDICES[13 - k :]]
    assert all(p.requires_grad for p in [*model.head.parameters(), *model.decoder.parameters()])
    recon, sim = model.param_groups()
    ids_r, ids_s = {id(p) for p in recon}, {id(p) for p in sim}
    assert not ids_r & ids_s
    assert ids_r | ids_s == {id(p) for p in model.parameters() if p.requires_grad}


def test_similarity_range_symmetry_identity(model):
    torch.manual_seed(0)
    a, b = torch.rand(5, 3, 32, 32) * 2 - 1, torch.rand(5, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ea, eb = model.embed(a), model.embed(b)
        s_ab, s_ba = similarity_from_embeddings(ea, eb), similarity_from_embeddings(eb, ea)
        s_aa = similarity_from_embeddings(ea, model.embed(a))
    assert s_ab.shape == (5,) and (s_ab >= 0).all() and (s_ab <= 1).all()
    assert torch.allclose(s_ab, s_ba)
    assert torch.allclose(s_aa, torch.ones(5), atol=1e-5)
    assert similarity_from_embeddings(torch.tensor([[1.0, 0]]), torch.tensor([[-1.0, 0]])).item() == pytest.approx(0.0)
    assert similarity_from_embeddings(torch.tensor([[1.0, 0]]), torch.tensor([[0.0, 1]])).item() == pytest.approx(0.5)


def test_forward_shapes_any_size(model):
    for size in (32, 48, 64):
        emb, rec = model(torch.zeros(2, 3, size, size))
        assert emb.shape == (2, 8) and rec.shape == (2, 3, size, size) and rec.abs().max() <= 1
