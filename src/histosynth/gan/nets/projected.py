"""Projected GAN discriminator (Sauer et al. 2021, "Projected GANs Converge Faster").

A discriminator trained from scratch on ~1k patches has to learn what an image is before it can tell real from
fake, and small-data GANs stall there. Projected GAN lets D judge images in the feature space of a frozen
ImageNet network (:class:`~histosynth.gan.nets.efficientnet_lite.EfficientNetLite0Features`) instead:

1. the (DiffAugmented) image is resized to ``feature_size`` and passed through the frozen network, which gives
   feature maps at four scales;
2. **cross-channel mixing** (CCM): a fixed random 1x1 convolution per scale (64, 128, 256, 512 channels);
3. **cross-scale mixing** (CSM): a fixed random top-down path, deeper mixed features upsampled x2 and added to the
   next shallower ones, each followed by a fixed random 1x1 convolution;
4. one small trainable discriminator per scale (spectral-norm 4x4 stride-2 convolutions with batch norm down to
   8x8, then a 4x4 convolution to a logit map), class-conditional by projection onto a class embedding. Each
   stride-2 convolution multiplies the channels by ``head_growth``: 2 as Projected GAN's heads, 1 keeps the
   projected width (the 32x32 head's body then costs ~1/3 of the multiply-adds).

Only the per-scale heads are trained: the random projections are fixed at initialisation (they spread the
pretrained features over all channels so no head can ignore most of them) and stored with the weights. The
logits of every head and position are returned together, ``(B, K)``, and the loss averages over all of them.
G's gradient flows back through the frozen network, which is what makes it converge in far fewer images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from histosynth.gan.nets.efficientnet_lite import EfficientNetLite0Features

MIX_CHANNELS = (64, 128, 256, 512)  # CCM output per scale (Projected GAN's expand=True with cout 64)
CMAP_DIM = 64  # class-projection width of each conditional head


def _frozen(m: nn.Module) -> nn.Module:
    return m.requires_grad_(False)


class RandomProjection(nn.Module):
    """CCM + CSM: fixed random mixing of the four feature maps; returns maps at 1/2, 1/4, 1/8, 1/16 of the
    feature network's input, with 64, 64, 128, 256 channels (each level is upsampled x2 by the top-down path)."""

    def __init__(self, channels: tuple[int, ...] = EfficientNetLite0Features.CHANNELS):
        super().__init__()
        self.ccm = nn.ModuleList(_frozen(nn.Conv2d(c, m, 1)) for c, m in zip(channels, MIX_CHANNELS))
        outs = (MIX_CHANNELS[0], *MIX_CHANNELS[:-1])  # 64, 64, 128, 256: each level halves the deeper width
        self.csm = nn.ModuleList(_frozen(nn.Conv2d(m, o, 1)) for m, o in zip(MIX_CHANNELS, outs))
        self.out_channels = outs

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        mixed = [ccm(f) for ccm, f in zip(self.ccm, feats)]
        out: list[torch.Tensor] = [None] * len(mixed)  # type: ignore[list-item]
        deeper = None
        for i in reversed(range(len(mixed))):
            h = mixed[i] if deeper is None else mixed[i] + deeper
            h = self.csm[i](F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False))
            out[i] = h
            deeper = h
        return out


class ScaleHead(nn.Module):
    """The trainable discriminator of one scale: (B, C, r, r) -> logit map (B, 1, r', r')."""

    def __init__(self, c_in: int, size: int, width: int = 64, num_classes: int = 0, growth: int = 2):
        super().__init__()
        sn = nn.utils.spectral_norm
        layers: list[nn.Module] = []
        c = c_in
        while size > 8:
            c_out = min(width * 8, max(width, c * growth))
            layers += [sn(nn.Conv2d(c, c_out, 4, 2, 1, bias=False)), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]
            c, size = c_out, size // 2
        self.body = nn.Sequential(*layers)
        self.num_classes = num_classes
        self.out = sn(nn.Conv2d(c, CMAP_DIM if num_classes else 1, 4, 1, 0 if size >= 4 else (5 - size) // 2))
        self.embed = nn.Embedding(num_classes, CMAP_DIM) if num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = self.out(self.body(x))
        if self.embed is None:
            return h
        if y is None:
            raise ValueError("this discriminator is class-conditional: pass class ids y")
        return (h * self.embed(y)[:, :, None, None]).sum(1, keepdim=True) / math.sqrt(CMAP_DIM)


class ProjectedDiscriminator(nn.Module):
    """D(x[, y]) -> logits (B, K): every head's map, flattened and concatenated.

    ``feature_size``: the side the image is resized to before the feature network (Projected GAN uses 224; at
    64 px patches 128 keeps ~4x less compute with the deepest map still 4x4). ``head_growth``: channel factor of
    each head's stride-2 convolutions (see the module docstring). The ImageNet weights are loaded by
    :meth:`load_pretrained`, after any weight initialisation of the trainable parts.
    """

    def __init__(self, image_size: int = 64, num_classes: int = 0, width: int = 64, feature_size: int = 128, head_growth: int = 2):
        super().__init__()
        if feature_size % 32:
            raise ValueError(f"feature_size must be a multiple of 32, got {feature_size}")
        if head_growth not in (1, 2):
            raise ValueError(f"head_growth must be 1 or 2, got {head_growth}")
        self.image_size, self.feature_size, self.num_classes = image_size, feature_size, num_classes
        self.features = EfficientNetLite0Features()
        self.projection = RandomProjection()
        sizes = [feature_size // 2**k for k in (1, 2, 3, 4)]
        self.heads = nn.ModuleList(ScaleHead(c, s, width, num_classes, head_growth) for c, s in zip(self.projection.out_channels, sizes))

    def load_pretrained(self, path=None):
        return self.features.load_pretrained(path)

    def project(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The frozen part: resize, feature network, random projection -> one map per head. Nothing here trains,
        so a training step can compute it once for a fake batch and judge it before and after D's update."""
        if x.shape[-1] != self.feature_size or x.shape[-2] != self.feature_size:
            x = F.interpolate(x, size=(self.feature_size, self.feature_size), mode="bilinear", align_corners=False)
        return self.projection(self.features(x))

    def judge(self, maps: list[torch.Tensor], y: torch.Tensor | None = None) -> torch.Tensor:
        """The trained heads on :meth:`project`'s maps -> logits (B, K)."""
        return torch.cat([head(m, y).flatten(1) for head, m in zip(self.heads, maps)], dim=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.judge(self.project(x), y)
