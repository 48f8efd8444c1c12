"""GA-GAN macro networks around the searched cell, and weight inheritance between candidates.

Generator: z (latent 128) -> ConvTranspose to 4x4 x ``width`` + ELU, then per stage: cell, residual add,
[self-attention], upsample (nearest x2 -> conv 3x3 -> conditional BN -> GLU, which halves the channels); two output
convs and tanh. Discriminator: conv 3x3 + ELU, then per stage: cell, residual add, [self-attention], downsample
(conv 3x3 doubling channels -> pixel-unshuffle x2 -> conv 1x1 -> ELU); then a linear head on the spatially summed
features plus the projection onto a class embedding. Both have log2(image_size / 4) stages (4 at 64 px), and
``width`` sets the channel counts so small presets and tests stay cheap (the method uses 1024 for G, 64 for D).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

from histosynth.errors import ConfigError
from histosynth.gan.nets.ga_gan_cells import Cell, SelfAttention, sn_conv
from histosynth.gan.nets.ga_gan_genotype import Genotype


def stages_for(image_size: int) -> int:
    """Upsample/downsample stages between 4x4 and ``image_size`` (a power of two >= 8)."""
    n = int(math.log2(image_size)) - 2 if image_size > 0 else 0
    if n < 1 or 4 << n != image_size:
        raise ConfigError(f"GA-GAN image size {image_size} is not a power of two >= 8", "use 32 or 64 (data.image_size)")
    return n


class ConditionalBN(nn.Module):
    """BatchNorm whose scale and shift come from the class (a plain affine BN when there are no classes)."""

    def __init__(self, c: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(c, affine=num_classes == 0)
        self.embed = nn.Embedding(num_classes, 2 * c) if num_classes else None
        if self.embed is not None:
            nn.init.ones_(self.embed.weight[:, :c])
            nn.init.zeros_(self.embed.weight[:, c:])

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        x = self.bn(x)
        if self.embed is None:
            return x
        gamma, beta = self.embed(y).chunk(2, dim=1)
        return x * gamma[:, :, None, None] + beta[:, :, None, None]


class Upsample(nn.Module):
    def __init__(self, c: int, num_classes: int):
        super().__init__()
        self.conv = sn_conv(c, c, 3)
        self.norm = ConditionalBN(c, num_classes)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        x = self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        return F.glu(self.norm(x, y), dim=1)  # halves the channels


def _attention(genotype: Genotype, channels: list[int]) -> nn.ModuleDict:
    return nn.ModuleDict({str(c): SelfAttention(channels[c - 1]) for c in genotype.attention})


class Generator(nn.Module):
    def __init__(self, genotype: Genotype, image_size: int = 64, latent_dim: int = 128, width: int = 1024, num_classes: int = 0, channels: int = 3):
        super().__init__()
        n = stages_for(image_size)
        genotype.check("g", n)
        if width % (1 << n):
            raise ConfigError(f"generator width {width} cannot be halved {n} times", f"use a multiple of {1 << n}")
        self.genotype, self.latent_dim, self.num_classes = genotype, latent_dim, num_classes
        self.image_size, self.width, self.channels = image_size, width, channels
        widths = [width >> s for s in range(n)]
        self.input = spectral_norm(nn.ConvTranspose2d(latent_dim, width, 4))
        self.cells = nn.ModuleList(Cell(genotype, c) for c in widths)
        self.attention = _attention(genotype, widths)
        self.up = nn.ModuleList(Upsample(c, num_classes) for c in widths)
        last = width >> n
        self.out = nn.Sequential(sn_conv(last, last, 3), nn.ELU(), sn_conv(last, channels, 3), nn.Tanh())

    def spec(self) -> dict:
        """The bundle spec that rebuilds this network (:func:`generator_from_spec`)."""
        return {"arch": "ga-gan", "genotype": str(self.genotype), "image_size": self.image_size, "latent_dim": self.latent_dim, "g_width": self.width, "channels": self.channels, "num_classes": self.num_classes}

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = F.elu(self.input(z.view(z.shape[0], -1, 1, 1)))
        for s, (cell, up) in enumerate(zip(self.cells, self.up), start=1):
            x = x + cell(x)
            if str(s) in self.attention:
                x = self.attention[str(s)](x)
            x = up(x, y)
        return self.out(x)


def generator_from_spec(spec: dict) -> Generator:
    """The generator an ``arch: ga-gan`` spec describes (:meth:`Generator.spec`; ``histosynth search retrain``
    writes it into the winner's bundle)."""
    return Generator(Genotype.parse(spec["genotype"], "g"), spec["image_size"], spec.get("latent_dim", 128), spec.get("g_width", 1024), spec.get("num_classes", 0), spec.get("channels", 3))


class Discriminator(nn.Module):
    def __init__(self, genotype: Genotype, image_size: int = 64, width: int = 64, num_classes: int = 0, channels: int = 3):
        super().__init__()
        n = stages_for(image_size)
        genotype.check("d", n)
        self.genotype, self.num_classes = genotype, num_classes
        widths = [width << s for s in range(n)]
        self.input = nn.Sequential(sn_conv(channels, width, 3), nn.ELU())
        self.cells = nn.ModuleList(Cell(genotype, c) for c in widths)
        self.attention = _attention(genotype, widths)
        self.down = nn.ModuleList(nn.Sequential(sn_conv(c, 2 * c, 3), nn.PixelUnshuffle(2), sn_conv(8 * c, 2 * c, 1), nn.ELU()) for c in widths)
        last = width << n
        self.linear = spectral_norm(nn.Linear(last, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, last)) if num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.input(x)
        for s, (cell, down) in enumerate(zip(self.cells, self.down), start=1):
            h = h + cell(h)
            if str(s) in self.attention:
                h = self.attention[str(s)](h)
            h = down(h)
        h = h.sum(dim=(2, 3))
        out = self.linear(h).squeeze(1)
        if self.embed is not None and y is not None:
            out = out + (self.embed(y) * h).sum(1)
        return out


@torch.no_grad()
def inherit(child: nn.Module, parent_state: dict[str, torch.Tensor]) -> list[str]:
    """Copy every parent tensor whose name and shape match one of ``child``'s (parameters and buffers); the rest
    keep their fresh initialisation. Returns the names copied."""
    copied = []
    for name, tensor in child.state_dict().items():
        src = parent_state.get(name)
        if src is not None and src.shape == tensor.shape:
            tensor.copy_(src)
            copied.append(name)
    return copied
