"""LeCam regularisation (histosynth.gan.lecam): the penalty against a direct evaluation of its definition, the
moving-average anchors, the direction it pushes D's logits, its state in checkpoints, and config errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from histosynth.config import load_config
from histosynth.errors import ConfigError
from histosynth.gan.lecam import LeCam

PRESET = Path(__file__).resolve().parents[2] / "configs" / "dcgan-samples.yaml"


def reference(real: torch.Tensor, fake: torch.Tensor, a_real: float, a_fake: float) -> float:
    """R = mean(max(0, D(x) - a_fake)^2) + mean(max(0, a_real - D(G(z)))^2), element by element in float64."""
    r = sum(max(0.0, v - a_fake) ** 2 for v in real.double().flatten().tolist()) / real.numel()
    f = sum(max(0.0, a_real - v) ** 2 for v in fake.double().flatten().tolist()) / fake.numel()
    return r + f


@pytest.mark.unit
def test_penalty_and_anchors_follow_the_definition():
    g = torch.Generator().manual_seed(0)
    lc = LeCam(weight=0.5, decay=0.9)
    a_real = a_fake = None
    for _ in range(5):
        real = torch.randn(8, 25, generator=g) + 1.0  # (B, K): a projected D's logits per head and position
        fake = torch.randn(8, 25, generator=g) - 1.0
        # the first batch sets both anchors; later ones move them by (1 - decay)
        a_real = real.mean().item() if a_real is None else 0.9 * a_real + 0.1 * real.mean().item()
        a_fake = fake.mean().item() if a_fake is None else 0.9 * a_fake + 0.1 * fake.mean().item()
        got = lc(real, fake)
        assert got.shape == ()
        assert got.item() == pytest.approx(0.5 * reference(real, fake, a_real, a_fake), rel=1e-5)
        assert lc.anchor_real.item() == pytest.approx(a_real, rel=1e-5) and lc.anchor_fake.item() == pytest.approx(a_fake, rel=1e-5)


@pytest.mark.unit
def test_pulls_real_logits_down_and_fake_logits_up_and_leaves_crossed_ones_alone():
    lc = LeCam(weight=1.0)
    lc.load_state_dict({"anchor_real": torch.tensor(1.0), "anchor_fake": torch.tensor(-1.0)})
    real = torch.tensor([2.0, -3.0], requires_grad=True)  # the second is already below the fake anchor
    fake = torch.tensor([-2.0, 3.0], requires_grad=True)  # the second is already above the real anchor
    lc(real, fake).backward()
    assert real.grad[0] > 0 and real.grad[1] == 0  # gradient descent lowers the first real logit
    assert fake.grad[0] < 0 and fake.grad[1] == 0  # and raises the first fake logit
    # logits between the anchors cost nothing
    assert LeCam(1.0)(torch.zeros(4), torch.zeros(4)).item() == 0.0


@pytest.mark.unit
def test_state_round_trip_continues_the_same_anchors():
    a, b = LeCam(0.1, 0.99), LeCam(0.1, 0.99)
    a(torch.ones(4), -torch.ones(4))
    a(2 * torch.ones(4), torch.zeros(4))
    assert b.state_dict() == {"decay": 0.99}  # nothing seen yet: no anchors
    b.load_state_dict(a.state_dict())
    x, y = torch.randn(4), torch.randn(4)
    assert torch.equal(a(x, y), b(x, y)) and torch.equal(a.anchor_real, b.anchor_real)


@pytest.mark.unit
@pytest.mark.parametrize("override", ["loss.lecam_weight=-0.1", "loss.lecam_decay=1.0"])
def test_bad_settings_are_config_errors(override):
    with pytest.raises(ConfigError, match="lecam") as e:
        load_config(PRESET, [override])
    assert "lecam_weight=0" in e.value.hint
