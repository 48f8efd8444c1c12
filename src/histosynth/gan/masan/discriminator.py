"""MASAN's discriminator: down-sampling to 8x8 x ``8 * features`` (512 with 64 features), a SAN last layer
(:mod:`histosynth.gan.masan.san`) and two small reconstruction decoders (FastGAN's self-supervision).

Channels at resolution r are ``max(features, 64 * features / r)``: the same 8x8 and 16x16 widths at 64, 128 and
256 px. Each down block averages a strided-conv path and an average-pool + 1x1 path (FastGAN), with spectral
norm on every conv when ``spectral_norm``.

Reconstruction: with only the real/fake signal a discriminator can solve its task from a few local cues and
learn little else; asking it to also rebuild the real image from its own features makes those features
describe the whole image, which is what G's gradients then come from. One decoder maps the 8x8 features to the
real image down-sampled to half size; the other maps a random quadrant (8x8) of the 16x16 features to the same
quadrant of the real image (half size, at full resolution). Both are trained with L1 on real images only
(:func:`recon_targets` gives the targets, :class:`histosynth.gan.masan.objective.MASANObjective` the loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from histosynth.gan.masan.generator import MIN_CHANNELS, n_doublings, up_block
from histosynth.gan.masan.san import SANLinear


def _maybe_sn(spectral_norm: bool):
    return nn.utils.spectral_norm if spectral_norm else (lambda m: m)


class DownBlock(nn.Module):
    """/2: mean of (4x4 stride-2 conv, 3x3 conv) and (2x2 average pool, 1x1 conv), each with BN + LeakyReLU."""

    def __init__(self, c_in: int, c_out: int, sn, batchnorm: bool):
        super().__init__()

        def norm_act(c: int) -> list[nn.Module]:
            return [*([nn.BatchNorm2d(c)] if batchnorm else []), nn.LeakyReLU(0.2)]

        self.main = nn.Sequential(sn(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)), *norm_act(c_out), sn(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)), *norm_act(c_out))
        self.direct = nn.Sequential(nn.AvgPool2d(2), sn(nn.Conv2d(c_in, c_out, 1, 1, 0, bias=False)), *norm_act(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(x) + self.direct(x)) / 2


def decoder(c_in: int, n_up: int, width: int, channels: int) -> nn.Sequential:
    """8x8 features -> an image 2**n_up times larger in [-1, 1] (up blocks halving ``width``)."""
    layers: list[nn.Module] = []
    for k in range(n_up):
        c_out = max(width >> k, MIN_CHANNELS)
        layers.append(up_block(c_in, c_out))
        c_in = c_out
    return nn.Sequential(*layers, nn.Conv2d(c_in, channels, 3, 1, 1), nn.Tanh())


def quadrant(x: torch.Tensor, part: int) -> torch.Tensor:
    """Quadrant ``part`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) of (B, C, H, W)."""
    h, w = x.shape[2] // 2, x.shape[3] // 2
    r, c = (part // 2) * h, (part % 2) * w
    return x[:, :, r : r + h, c : c + w]


def recon_targets(real: torch.Tensor, part: int) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (whole real image down-sampled 2x by 2x2 averaging, quadrant ``part`` of it at full resolution)."""
    return F.avg_pool2d(real, 2), quadrant(real, part)


class MASANDiscriminator(nn.Module):
    def __init__(self, image_size: int = 256, features: int = 64, channels: int = 3, num_classes: int = 0, spectral_norm: bool = True, batchnorm: bool = True, san: bool = True):
        """``san`` False: the last layer is a plain linear head (unnormalised per-class rows) trained on the GAN loss
        alone (the ablation of ``model.san=false``; :class:`~histosynth.gan.masan.objective.MASANObjective`)."""
        super().__init__()
        n_doublings(image_size)  # checks the size
        self.num_classes, self.sliced = num_classes, san
        sn = _maybe_sn(spectral_norm)

        def width(r: int) -> int:
            return max(features, features * 64 // r)

        res = [image_size // 2]
        while res[-1] > 8:
            res.append(res[-1] // 2)  # image_size/2, .., 16, 8
        self.stem = nn.Sequential(sn(nn.Conv2d(channels, width(res[0]), 4, 2, 1, bias=False)), nn.LeakyReLU(0.2))
        self.downs = nn.ModuleList(DownBlock(width(a), width(b), sn, batchnorm) for a, b in zip(res, res[1:]))
        self.head = nn.Sequential(sn(nn.Conv2d(width(8), 2 * features, 4, 2, 1, bias=False)), nn.LeakyReLU(0.2), nn.Flatten())
        self.san = SANLinear(2 * features * 16, num_classes, normalize=san)
        n_up = n_doublings(image_size) - 2  # 8 -> image_size / 2
        self.decode_8 = decoder(width(8), n_up, 2 * features, channels)
        self.decode_16 = decoder(width(16), n_up, 2 * features, channels)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (h(x) (B, D) for the SAN layer, 8x8 features, 16x16 features)."""
        f = self.stem(x)
        maps = {f.shape[-1]: f}
        for block in self.downs:
            f = block(f)
            maps[f.shape[-1]] = f
        return self.head(maps[8]), maps[8], maps[16]

    def reconstruct(self, f8: torch.Tensor, f16: torch.Tensor, part: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (whole image from the 8x8 features, quadrant ``part`` from that quadrant of the 16x16 features),
        both half the input size: compare with :func:`recon_targets`."""
        return self.decode_8(f8), self.decode_16(quadrant(f16, part))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images -> the plain SAN output ``<w_y, h(x)>`` (B,): what G's loss and the metrics use."""
        return self.san(self.features(x)[0], y)
