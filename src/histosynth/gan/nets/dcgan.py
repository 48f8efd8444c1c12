"""DCGAN (Radford et al. 2016) at 32/64/128 px, optionally class-conditional.

Conditioning: G concatenates a learned class embedding to z; D adds a projection term
(Miyato & Koyama 2018), so the unconditional model is the plain DCGAN of the primary paper. ``cond_bn`` also makes
every batch norm of G class-conditional (a per-class gain and bias, as in Miyato & Koyama's and BigGAN's
generators): concatenated to z alone, four classes are 4 of 104 inputs that G can learn to ignore, and the
classes bleed into each other (IHC cells on blood-smear background).

Up-sampling (``upsample``): ``deconv`` is the paper's stride-2 4x4 transposed convolution. Its kernel overlaps
unevenly, which prints a periodic checkerboard into the images (Odena et al. 2016, "Deconvolution and
Checkerboard Artifacts") that small-data training never unlearns. ``resize`` replaces each stride-2 layer with
nearest-neighbour x2 + 3x3 convolution, which cannot produce that pattern, at about the same cost.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SIZES = (32, 64, 128)
UPSAMPLE = ("deconv", "resize")


def _n_up(image_size: int) -> int:
    if image_size not in SIZES:
        raise ValueError(f"image_size must be one of {SIZES}, got {image_size}")
    return int(math.log2(image_size)) - 2  # 4x4 start, doubling to image_size


def _mults(n: int) -> list[int]:
    """Channel multipliers from the 4x4 layer down to the last hidden layer, capped at 8 (as in DCGAN)."""
    return [min(8, 2 ** (n - 1 - i)) for i in range(n)]


def _up(c_in: int, c_out: int, upsample: str, bias: bool = False) -> list[nn.Module]:
    """x2 spatial up-sampling from c_in to c_out channels."""
    if upsample == "resize":
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias)]
    return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias)]


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm without its own affine, then a per-class gain (1 + gamma_y) and bias beta_y, both starting at 0
    so the untrained layer is a plain batch norm."""

    def __init__(self, channels: int, num_classes: int, latent_dim: int = 0):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)
        # skip-z (BigGAN): gain and bias also linear in z, so the latent steers every layer, not only the first
        self.gain_z = nn.Linear(latent_dim, channels, bias=False) if latent_dim else None
        self.bias_z = nn.Linear(latent_dim, channels, bias=False) if latent_dim else None
        for m in (self.gain_z, self.bias_z):
            if m is not None:
                nn.init.zeros_(m.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        gain, bias = self.gain(y), self.bias(y)
        if self.gain_z is not None:
            gain, bias = gain + self.gain_z(z), bias + self.bias_z(z)
        return self.bn(x) * (1 + gain[:, :, None, None]) + bias[:, :, None, None]


class DCGANGenerator(nn.Module):
    def __init__(
        self,
        image_size: int = 64,
        latent_dim: int = 100,
        features: int = 64,
        channels: int = 3,
        num_classes: int = 0,
        upsample: str = "deconv",
        cond_bn: bool = False,
        skip_z: bool = False,
    ):
        super().__init__()
        if upsample not in UPSAMPLE:
            raise ValueError(f"upsample must be one of {UPSAMPLE}, got {upsample!r}")
        if cond_bn and not num_classes:
            raise ValueError("cond_bn needs a class-conditional generator (num_classes > 0)")
        if skip_z and not cond_bn:
            raise ValueError("skip_z feeds z to the conditional batch norms: it needs cond_bn")
        self.image_size, self.latent_dim, self.num_classes = image_size, latent_dim, num_classes
        mults = _mults(_n_up(image_size))
        embed_dim = num_classes if num_classes else 0
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        norm = (lambda c: ConditionalBatchNorm2d(c, num_classes, latent_dim if skip_z else 0)) if cond_bn else nn.BatchNorm2d
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim + embed_dim, features * mults[0], 4, 1, 0, bias=False),
            norm(features * mults[0]),
            nn.ReLU(True),
        ]
        for a, b in zip(mults, mults[1:]):
            layers += [*_up(features * a, features * b, upsample), norm(features * b), nn.ReLU(True)]
        layers += [*_up(features * mults[-1], channels, upsample), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z: (B, latent_dim) -> images (B, C, H, W) in [-1, 1]; y: (B,) class ids when conditional."""
        latent = z
        if self.embed is not None:
            if y is None:
                raise ValueError("this generator is class-conditional: pass class ids y")
            z = torch.cat([z, self.embed(y)], dim=1)
        h = z[:, :, None, None]
        for layer in self.main:
            h = layer(h, y, latent) if isinstance(layer, ConditionalBatchNorm2d) else layer(h)
        return h


class DCGANDiscriminator(nn.Module):
    def __init__(
        self,
        image_size: int = 64,
        features: int = 64,
        channels: int = 3,
        num_classes: int = 0,
        spectral_norm: bool = False,
        batchnorm: bool = True,
        minibatch_std: bool = False,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.minibatch_std = minibatch_std
        sn = nn.utils.spectral_norm if spectral_norm else (lambda m: m)
        use_bn = batchnorm and not spectral_norm
        mults = list(reversed(_mults(_n_up(image_size))))
        layers: list[nn.Module] = [sn(nn.Conv2d(channels, features * mults[0], 4, 2, 1, bias=False)), nn.LeakyReLU(0.2, True)]
        for a, b in zip(mults, mults[1:]):
            layers.append(sn(nn.Conv2d(features * a, features * b, 4, 2, 1, bias=not use_bn)))
            if use_bn:
                layers.append(nn.BatchNorm2d(features * b))
            layers.append(nn.LeakyReLU(0.2, True))
        self.features = nn.Sequential(*layers)
        width = features * mults[-1]
        self.head = sn(nn.Conv2d(width + int(minibatch_std), 1, 4, 1, 0, bias=False))
        self.embed = sn(nn.Embedding(num_classes, width)) if num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, C, H, W) -> logits (B,)."""
        h = self.features(x)
        out = self.head(minibatch_stddev(h) if self.minibatch_std else h).flatten(1).sum(1)
        if self.embed is not None:
            if y is None:
                raise ValueError("this discriminator is class-conditional: pass class ids y")
            out = out + (self.embed(y) * h.sum(dim=(2, 3))).sum(1)
        return out


def minibatch_stddev(h: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append one feature map: the mean over features of the standard deviation across each group of ``group``
    samples (Karras et al. 2018). A collapsed batch of fakes has ~0 there while real batches do not, so D can
    penalise missing diversity and G's gradient asks for it (one extra channel, negligible cost)."""
    b, _, hh, ww = h.shape
    g = group if b % group == 0 else b
    std = h.float().view(g, -1, *h.shape[1:]).var(dim=0, unbiased=False).add(1e-8).sqrt()  # (B/g, C, H, W)
    stat = std.mean(dim=(1, 2, 3)).to(h.dtype)  # (B/g,)
    stat = stat.repeat(g)[:, None, None, None].expand(b, 1, hh, ww)  # sample i is in group i % (B/g)
    return torch.cat([h, stat], dim=1)


def init_dcgan_weights(module: nn.Module) -> None:
    """N(0, 0.02) for conv weights, N(1, 0.02) for batch-norm scales (DCGAN paper). Frozen layers (a pretrained
    feature network, fixed random projections) keep their weights."""
    for m in module.modules():
        w = getattr(m, "weight_orig", getattr(m, "weight", None))
        if isinstance(w, torch.Tensor) and not w.requires_grad:
            continue
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            w = m.weight_orig if hasattr(m, "weight_orig") else m.weight
            nn.init.normal_(w, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
