"""Efficient Multi-scale Attention (MASAN's attention layer) against a direct per-group computation."""

from __future__ import annotations

import pytest
import torch

from histosynth.gan.masan import EfficientMultiScaleAttention

pytestmark = pytest.mark.numerics


def test_efficient_multiscale_attention_against_a_per_group_reference():
    """Each block of channels//groups consecutive channels is one group, computed on its own (module docstring)."""
    torch.manual_seed(0)
    ema = EfficientMultiScaleAttention(8, groups=2).double()
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
    out = ema(x)
    for b in range(2):
        for g in range(2):
            gx = x[b : b + 1, 4 * g : 4 * g + 4]  # (1, 4, H, W)
            a_h = ema.conv1x1(gx.mean(3, keepdim=True))  # a 1x1 conv acts per position: the concat changes nothing
            a_w = ema.conv1x1(gx.mean(2, keepdim=True))
            x1 = ema.norm(gx * a_h.sigmoid() * a_w.sigmoid())[0]  # (4, H, W)
            x2 = ema.conv3x3(gx)[0]
            w1, w2 = torch.softmax(x1.mean((1, 2)), 0), torch.softmax(x2.mean((1, 2)), 0)
            attn = torch.einsum("c,chw->hw", w1, x2) + torch.einsum("c,chw->hw", w2, x1)
            torch.testing.assert_close(out[b, 4 * g : 4 * g + 4], gx[0] * attn.sigmoid())
