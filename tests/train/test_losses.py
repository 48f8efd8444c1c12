"""Adversarial losses against values computed by hand (math, not torch), and their gradient signs."""

from __future__ import annotations

import math

import pytest
import torch

from histosynth.errors import ConfigError, HistosynthError
from histosynth.gan.losses import LOSSES, get_loss, gradient_penalty, loss_from_config
from histosynth.config import LossConfig

REAL = [0.0, 2.0]
FAKE = [0.0, -1.0]


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs)


def ganetic(y: float, logit: float, eps: float = 1e-8) -> float:
    p = sigmoid(logit)
    return p**3 + math.sqrt(abs(3.985 * y / (p + eps)) + eps)


# (name, kwargs, d_real(REAL), d_fake(FAKE), g(FAKE)); BCE(l, t) = softplus(l) - t * l
EXPECTED = [
    ("bce", {"real_label": 0.9}, mean(softplus(l) - 0.9 * l for l in REAL), mean(softplus(l) for l in FAKE), mean(softplus(-l) for l in FAKE)),
    ("bce", {"real_label": 1.0}, mean(softplus(l) - l for l in REAL), mean(softplus(l) for l in FAKE), mean(-math.log(sigmoid(l)) for l in FAKE)),
    ("hinge", {}, mean([1.0, 0.0]), mean([1.0, 0.0]), 0.5),
    ("lsgan", {}, 0.5 * mean([1.0, 1.0]), 0.5 * mean([0.0, 1.0]), 0.5 * mean([1.0, 4.0])),
    ("wgan", {}, -1.0, -0.5, 0.5),
    ("ganetic", {}, mean(ganetic(1, l) for l in REAL), mean(ganetic(0, l) for l in FAKE), mean(ganetic(1, l) for l in FAKE)),
]


@pytest.mark.numerics
@pytest.mark.parametrize("name,kwargs,d_real,d_fake,g", EXPECTED, ids=[f"{e[0]}-{i}" for i, e in enumerate(EXPECTED)])
def test_loss_values_match_hand_computation(name, kwargs, d_real, d_fake, g):
    loss = get_loss(name, **kwargs)
    real, fake = torch.tensor(REAL), torch.tensor(FAKE)
    assert loss.d_real(real).item() == pytest.approx(d_real, rel=1e-6, abs=1e-6)
    assert loss.d_fake(fake).item() == pytest.approx(d_fake, rel=1e-6, abs=1e-6)
    assert loss.d_loss(real, fake).item() == pytest.approx(d_real + d_fake, rel=1e-6, abs=1e-6)
    assert loss.g_loss(fake).item() == pytest.approx(g, rel=1e-6, abs=1e-6)


@pytest.mark.unit
def test_ganetic_formula_spot_value():
    # p = sigmoid(0) = 0.5: 0.125 + sqrt(3.985 / 0.5) = 0.125 + sqrt(7.97); y = 0: 0.125 + sqrt(eps)
    loss = get_loss("ganetic")
    assert loss.d_real(torch.zeros(3)).item() == pytest.approx(0.125 + math.sqrt(7.97), rel=1e-6)
    assert loss.d_fake(torch.zeros(3)).item() == pytest.approx(0.125 + 1e-4, rel=1e-5)


def _grad(fn, logits):
    x = torch.tensor(logits, requires_grad=True)
    fn(x).backward()
    return x.grad


@pytest.mark.numerics
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradient_signs(name):
    """D pushes real logits up and fake logits down; G pushes fake logits up (away from each loss's targets:
    lsgan aims at 1/0, and GANetic's real term is minimal near p = 0.73, logit ~1)."""
    loss = get_loss(name)
    low, high = [-0.5, 0.0, 0.5], [0.1, 0.3, 0.6]
    assert (_grad(loss.d_real, low) < 0).all(), "D loss on real must fall as D(real) rises"
    assert (_grad(loss.d_fake, high) > 0).all(), "D loss on fake must rise as D(fake) rises"
    assert (_grad(loss.g_loss, low) < 0).all(), "G loss must fall as D(fake) rises"


@pytest.mark.numerics
def test_bce_generator_is_non_saturating():
    """-log D(G(z)): a confident D (logit -10) still gives G a gradient of ~ -1/B, unlike log(1 - D(G(z)))."""
    g = _grad(get_loss("bce").g_loss, [-10.0, -10.0])
    assert g.tolist() == pytest.approx([-(1 - sigmoid(-10.0)) / 2] * 2, rel=1e-6)
    saturating = _grad(lambda l: torch.log1p(-torch.sigmoid(l)).mean(), [-10.0, -10.0])
    assert saturating.abs().max() < 1e-4


@pytest.mark.numerics
def test_one_sided_label_smoothing_optimum():
    """With real_label 0.9 the real term is minimal at sigmoid(logit) = 0.9, and fakes keep target 0."""
    loss = get_loss("bce", real_label=0.9)
    at = math.log(0.9 / 0.1)
    assert _grad(loss.d_real, [at]).abs().item() < 1e-6
    assert _grad(loss.d_real, [at + 1]).item() > 0  # past the smoothed target D is pushed back
    assert _grad(loss.d_fake, [-20.0]).item() == pytest.approx(sigmoid(-20.0), rel=1e-4)


@pytest.mark.unit
def test_losses_run_in_fp32_for_low_precision_logits():
    for name in LOSSES:
        loss = get_loss(name)
        out = loss.d_loss(torch.tensor(REAL, dtype=torch.bfloat16), torch.tensor(FAKE, dtype=torch.bfloat16))
        assert out.dtype == torch.float32


@pytest.mark.unit
def test_registry_errors_and_config():
    with pytest.raises(ConfigError, match="unknown loss 'nope'"):
        get_loss("nope")
    assert isinstance(ConfigError("x"), HistosynthError)
    with pytest.raises(ConfigError, match="real_label"):
        get_loss("bce", real_label=1.5)
    hinge = get_loss("hinge", real_label=0.9)  # params a loss does not take are ignored
    assert hinge.name == "hinge"
    assert loss_from_config(LossConfig(name="bce", real_label=0.8)).real_label == 0.8


class _Linear(torch.nn.Module):
    """D(x) = <w, x> per sample: grad_x D = w everywhere, so the penalty is (||w|| - 1)^2 exactly."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x, y=None):
        return (x * self.w).flatten(1).sum(1)


@pytest.mark.numerics
def test_gradient_penalty_exact_for_linear_critic():
    w = torch.zeros(1, 3, 4, 4)
    w[0, 0, 0, 0], w[0, 1, 2, 3] = 3.0, 4.0  # ||w|| = 5
    d = _Linear(w.clone())
    real, fake = torch.randn(6, 3, 4, 4), torch.randn(6, 3, 4, 4)
    gp = gradient_penalty(d, real, fake)
    assert gp.item() == pytest.approx(16.0, rel=1e-6)
    gp.backward()  # it trains through the penalty: d/dw of (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    assert torch.allclose(d.w.grad, 2 * 4 * w / 5, atol=1e-5)
    assert gradient_penalty(_Linear(w / 5), real, fake).item() == pytest.approx(0.0, abs=1e-10)


@pytest.mark.unit
@pytest.mark.parametrize("name,kwargs,d_real,d_fake,g", EXPECTED, ids=[f"{e[0]}-{i}" for i, e in enumerate(EXPECTED)])
def test_per_sample_terms_average_to_the_batch_losses(name, kwargs, d_real, d_fake, g):
    """RL-EO's weighted mode scales the per-sample fake terms: their mean must be the loss every run uses."""
    loss = get_loss(name, **kwargs)
    real, fake = torch.tensor(REAL), torch.tensor(FAKE)
    for terms, value in ((loss.real_terms(real), d_real), (loss.fake_terms(fake), d_fake), (loss.g_terms(fake), g)):
        assert terms.shape == (2,)
        assert terms.mean().item() == pytest.approx(value, rel=1e-6, abs=1e-7)
    assert loss.d_fake(fake).item() == pytest.approx(d_fake, rel=1e-6, abs=1e-7)


@pytest.mark.unit
def test_soft_fake_targets_for_the_losses_that_have_targets():
    """``fake_terms_to``: BCE(l, t) = softplus(l) - t*l and 0.5 (l - t)^2; target 0 is the usual fake term."""
    fake, t = torch.tensor(FAKE), torch.tensor([0.25, 0.1])
    bce = get_loss("bce", real_label=0.9)
    assert bce.fake_terms_to(fake, t).tolist() == pytest.approx([softplus(l) - tt * l for l, tt in zip(FAKE, t.tolist())], rel=1e-6)
    assert torch.equal(bce.fake_terms_to(fake, torch.zeros(2)), bce.fake_terms(fake))
    assert get_loss("lsgan").fake_terms_to(fake, t).tolist() == pytest.approx([0.5 * (l - tt) ** 2 for l, tt in zip(FAKE, t.tolist())], rel=1e-6)
    for name in ("hinge", "wgan", "ganetic"):
        with pytest.raises(ConfigError, match=f"loss.name={name} has no target for fakes") as e:
            get_loss(name).fake_terms_to(fake, t)
        assert "rl_eo.mode=weighted" in e.value.hint
