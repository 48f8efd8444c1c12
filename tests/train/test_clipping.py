"""Gradient clipping by norm (rescale) and by value (the paper's "clip value 0.1": clamp each element)."""

from __future__ import annotations

import pytest
import torch

from histosynth.config import load_config
from histosynth.errors import ConfigError
from histosynth.gan.train.step import clip_and_norm


def _params(*grads):
    ps = [torch.nn.Parameter(torch.zeros(len(g))) for g in grads]
    for p, g in zip(ps, grads):
        p.grad = torch.tensor(g)
    return ps


@pytest.mark.unit
def test_value_clipping_clamps_each_element_and_reports_the_norm_before():
    ps = _params([0.05, -0.5, 3.0], [-0.1, 0.0])
    total = clip_and_norm(ps, 0.1, "value")
    assert total.item() == pytest.approx((0.05**2 + 0.5**2 + 9 + 0.01) ** 0.5, rel=1e-6)
    assert ps[0].grad.tolist() == pytest.approx([0.05, -0.1, 0.1])  # small elements untouched, the rest clamped
    assert ps[1].grad.tolist() == pytest.approx([-0.1, 0.0])


@pytest.mark.unit
def test_norm_clipping_rescales_the_whole_gradient():
    ps = _params([3.0, 4.0], [0.0])
    assert clip_and_norm(ps, 1.0, "norm").item() == pytest.approx(5.0)
    assert ps[0].grad.tolist() == pytest.approx([0.6, 0.8], rel=1e-5)  # direction kept, norm 1


@pytest.mark.unit
@pytest.mark.parametrize("mode", ["norm", "value"])
def test_limit_zero_clips_nothing(mode):
    ps = _params([3.0, -4.0])
    assert clip_and_norm(ps, 0.0, mode).item() == pytest.approx(5.0)
    assert ps[0].grad.tolist() == [3.0, -4.0]


@pytest.mark.unit
def test_clip_mode_is_checked():
    with pytest.raises(ConfigError, match="optim.clip_mode='max' is not a clipping mode"):
        load_config(None, ["optim.clip_mode=max"])
