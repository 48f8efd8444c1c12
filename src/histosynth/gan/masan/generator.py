"""MASAN's generator (FastGAN / CellGAN lineage) at 64, 128 or 256 px.

``z`` (B, latent) -> 4x4 by a transposed conv, then one up-sampling block per doubling (nearest x2, 3x3 conv,
batch norm, GLU) to ``image_size``; channels start at ``8 * features`` and halve in every block (512 -> 8 at
256 px with 64 features), and a 3x3 conv + tanh makes the RGB image.

- Class conditioning by AdaIN in the intermediate blocks (all but the last): a class embedding goes through a
  small mapping MLP to a style vector, and each block's instance-normalised features are rescaled and shifted
  per channel by ``(1 + gamma(style), beta(style))``. The class thus sets feature statistics at every scale
  instead of only entering with ``z``. Unconditional models keep plain batch norm.
- Efficient Multi-scale Attention (:mod:`histosynth.gan.masan.ema_attention`; an attention layer, not a weight
  average) after every intermediate block: long-range, per-position reweighting that cell layouts need.
- Skip-layer excitation (FastGAN): the 4x4, 8x8 and 16x16 features gate the channels of the 64, 128 and 256 px
  features (``high * sigmoid(conv1x1(silu(conv4x4(pool_4x4(low)))))``): a short gradient path from the
  output to the early layers, and global structure set at low resolution.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from histosynth.gan.masan.ema_attention import EfficientMultiScaleAttention

SIZES = (64, 128, 256)
STYLE_DIM = 128
MIN_CHANNELS = 8


def n_doublings(image_size: int) -> int:
    if image_size not in SIZES:
        raise ValueError(f"image_size must be one of {SIZES}, got {image_size}")
    return int(math.log2(image_size)) - 2  # from 4x4


def up_block(c_in: int, c_out: int) -> nn.Sequential:
    """x2: nearest up-sampling, 3x3 conv to 2 * c_out, batch norm, GLU (-> c_out)."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, 2 * c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(2 * c_out), nn.GLU(dim=1))


class AdaIN(nn.Module):
    """``(1 + gamma(s)) * instance_norm(x) + beta(s)`` per channel, from a style vector ``s``."""

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.affine = nn.Linear(style_dim, 2 * channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.affine(style)[:, :, None, None].chunk(2, dim=1)
        return (1.0 + gamma) * self.norm(x) + beta


class SkipExcitation(nn.Module):
    """FastGAN's skip-layer excitation: channel gates for a high-resolution map from a low-resolution one."""

    def __init__(self, c_low: int, res_low: int, c_high: int):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AvgPool2d(res_low // 4) if res_low > 4 else nn.Identity(),  # to 4x4 (a fixed pool: exports to ONNX as is)
            nn.Conv2d(c_low, c_high, 4, 1, 0, bias=False),
            nn.SiLU(),
            nn.Conv2d(c_high, c_high, 1, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return high * self.gate(low)


class MASANGenerator(nn.Module):
    def __init__(self, image_size: int = 256, latent_dim: int = 256, features: int = 64, channels: int = 3, num_classes: int = 0, attention_groups: int = 8, attention: bool = True):
        """``attention`` False: no attention layers (the ablation of ``model.masan_attention=false``)."""
        super().__init__()
        n = n_doublings(image_size)
        self.image_size, self.latent_dim, self.num_classes = image_size, latent_dim, num_classes
        chans = [max(features * 8 >> i, MIN_CHANNELS) for i in range(n + 1)]  # at 4, 8, .., image_size px
        self.init = nn.Sequential(nn.ConvTranspose2d(latent_dim, 2 * chans[0], 4, 1, 0, bias=False), nn.BatchNorm2d(2 * chans[0]), nn.GLU(dim=1))
        self.blocks = nn.ModuleList(up_block(a, b) for a, b in zip(chans, chans[1:]))
        inner = range(1, n)  # block outputs between the first and the last layer
        self.attention = nn.ModuleDict({str(i): EfficientMultiScaleAttention(chans[i], attention_groups) for i in inner} if attention else {})
        # block i makes 4 * 2**i px; from 64 px on it is gated by the map 16x smaller (index i - 4)
        self.excite = nn.ModuleDict({str(i): SkipExcitation(chans[i - 4], 4 << (i - 4), chans[i]) for i in range(4, n + 1)})
        if num_classes:
            self.embed = nn.Embedding(num_classes, STYLE_DIM)
            self.mapping = nn.Sequential(nn.Linear(STYLE_DIM, STYLE_DIM), nn.LeakyReLU(0.2), nn.Linear(STYLE_DIM, STYLE_DIM), nn.LeakyReLU(0.2))
            self.adain = nn.ModuleDict({str(i): AdaIN(chans[i], STYLE_DIM) for i in inner})
        self.to_rgb = nn.Sequential(nn.Conv2d(chans[-1], channels, 3, 1, 1), nn.Tanh())

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z: (B, latent_dim) -> images (B, C, H, W) in [-1, 1]; y: (B,) class ids when conditional."""
        style = None
        if self.num_classes:
            if y is None:
                raise ValueError("this generator is class-conditional: pass class ids y")
            style = self.mapping(self.embed(y))
        feats = [self.init(z[:, :, None, None])]
        for i, block in enumerate(self.blocks, start=1):
            x = block(feats[-1])
            if str(i) in self.excite:
                x = self.excite[str(i)](feats[i - 4], x)
            if style is not None and str(i) in self.adain:
                x = self.adain[str(i)](x, style)
            if str(i) in self.attention:
                x = self.attention[str(i)](x)
            feats.append(x)
        return self.to_rgb(feats[-1])
