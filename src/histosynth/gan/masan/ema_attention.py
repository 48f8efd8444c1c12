"""Efficient Multi-scale Attention (EMA; Ouyang et al. 2023, "Efficient Multi-Scale Attention Module with
Cross-Spatial Learning"), the attention MASAN's generator places between its up-sampling blocks.

Not to be confused with :mod:`histosynth.gan.weight_ema`, the exponential moving average of G's *weights*:
the two share an acronym only. This module is a layer of the network; that one is a training-time copy of it.

Channels are split into ``groups`` sub-features (folded into the batch axis, so the cost is that of one small
group). Each group goes through two branches with shared weights:

- 1x1 branch: average over W and over H gives a (c, H) and a (c, W) profile; one shared 1x1 conv over their
  concatenation, then ``x * sigmoid(a_h) * sigmoid(a_w)`` and a per-channel group norm -> ``x1``
  (direction-aware channel attention, as in coordinate attention);
- 3x3 branch: a 3x3 conv -> ``x2`` (a larger receptive field: the "multi-scale" part).

Cross-spatial learning: each branch's global average, soft-maxed over channels, weights the *other* branch's
per-pixel features, ``A = softmax(gap(x1)) @ x2 + softmax(gap(x2)) @ x1`` (one map (H, W) per group), and the
output is ``x * sigmoid(A)``. The module keeps the shape and adds only two tiny convs, so it can sit after
every intermediate block.
"""

from __future__ import annotations

import torch
from torch import nn


class EfficientMultiScaleAttention(nn.Module):
    def __init__(self, channels: int, groups: int = 8):
        super().__init__()
        groups = min(groups, channels)
        if channels % groups:
            raise ValueError(f"channels={channels} is not divisible by groups={groups}")
        self.groups = groups
        c = channels // groups
        self.conv1x1 = nn.Conv2d(c, c, 1)
        self.conv3x3 = nn.Conv2d(c, c, 3, padding=1)
        self.norm = nn.GroupNorm(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, ch, h, w = x.shape
        c = ch // self.groups
        gx = x.reshape(-1, c, h, w)  # (B * groups, c, H, W)
        a = self.conv1x1(torch.cat([gx.mean(3, keepdim=True), gx.mean(2, keepdim=True).transpose(2, 3)], dim=2))
        a_h, a_w = torch.split(a, [h, w], dim=2)
        x1 = self.norm(gx * a_h.sigmoid() * a_w.transpose(2, 3).sigmoid())
        x2 = self.conv3x3(gx)
        w1 = torch.softmax(x1.mean((2, 3)), dim=-1)[:, None, :]  # (B*g, 1, c)
        w2 = torch.softmax(x2.mean((2, 3)), dim=-1)[:, None, :]
        attn = w1 @ x2.reshape(-1, c, h * w) + w2 @ x1.reshape(-1, c, h * w)  # (B*g, 1, H*W)
        return (gx * attn.reshape(-1, 1, h, w).sigmoid()).reshape(b, ch, h, w)
