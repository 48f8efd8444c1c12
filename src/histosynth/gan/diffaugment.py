"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

With ~1k training patches a discriminator memorises the real set within a few epochs and G collapses. DiffAugment
applies the same family of random, differentiable transforms to *every* image D sees (real and fake, in D's
update and in G's), so D cannot tell data from fakes by the augmentation and G's gradients flow through it
(G is never pushed to produce augmented-looking images).

Policies (comma-separated in ``augment.policy``; images in [-1, 1], shape (B, C, H, W)):

- ``color``: brightness ``x + (u - 0.5)``, then saturation ``(x - mean_c(x)) * 2u + mean_c(x)``, then contrast
  ``(x - mean_chw(x)) * (u + 0.5) + mean_chw(x)``; each ``u ~ U(0, 1)`` drawn per image.
- ``translation``: shift by integers ``t ~ U{-r, .., r}`` per axis and image, ``r = round(ratio * size)``
  (ratio 1/8), zero fill: ``out[i, j] = x[i + tx, j + ty]`` where inside, else 0.
- ``cutout``: zero a square of side ``round(ratio * size)`` (ratio 1/2) centred at a per-image random offset
  ``o ~ U{0, .., size - (side mod 2)}`` minus ``side // 2``, clipped at the border.

Every image in a batch gets its own draw; D's real and fake batches and G's batch get independent draws (as in
the published code). The transforms are split into ``sample`` (random parameters) and ``apply`` (a deterministic
function of image and parameters) so tests can check them against the definitions above.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from histosynth.config.gan import AUGMENT_OPS, parse_policy

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _uniform(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, generator=generator, device=x.device if generator is None else generator.device).to(x.device, x.dtype)


def _randint(low: int, high: int, n: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``n`` integers in [low, high) on x's device."""
    dev = x.device if generator is None else generator.device
    return torch.randint(low, high, (n,), generator=generator, device=dev).to(x.device)


def color_params(x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    return {"brightness": _uniform(x, generator), "saturation": _uniform(x, generator), "contrast": _uniform(x, generator)}


def color_apply(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    x = x + (p["brightness"] - 0.5)
    mean_c = x.mean(dim=1, keepdim=True)
    x = (x - mean_c) * (p["saturation"] * 2.0) + mean_c
    mean_all = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean_all) * (p["contrast"] + 0.5) + mean_all


def translation_params(x: torch.Tensor, generator: torch.Generator | None = None, ratio: float = TRANSLATION_RATIO) -> dict[str, torch.Tensor]:
    b, _, h, w = x.shape
    rh, rw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    return {"dy": _randint(-rh, rh + 1, b, x, generator), "dx": _randint(-rw, rw + 1, b, x, generator)}


def translation_apply(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    b, c, h, w = x.shape
    rows = torch.arange(h, device=x.device)[None, :] + p["dy"][:, None]  # (B, H): source row of each output row
    cols = torch.arange(w, device=x.device)[None, :] + p["dx"][:, None]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (B, H, W)
    r = rows.clamp(0, h - 1)[:, None, :, None].expand(b, c, h, w)
    cc = cols.clamp(0, w - 1)[:, None, None, :].expand(b, c, h, w)
    out = x.gather(2, r).gather(3, cc)
    return out * inside[:, None].to(x.dtype)


def cutout_params(x: torch.Tensor, generator: torch.Generator | None = None, ratio: float = CUTOUT_RATIO) -> dict[str, torch.Tensor]:
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    return {
        "y0": _randint(0, h + (1 - sh % 2), b, x, generator) - sh // 2,
        "x0": _randint(0, w + (1 - sw % 2), b, x, generator) - sw // 2,
        "size": torch.tensor([sh, sw], device=x.device),
    }


def cutout_apply(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    _, _, h, w = x.shape
    sh, sw = int(p["size"][0]), int(p["size"][1])
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_r = (rows >= p["y0"][:, None]) & (rows < p["y0"][:, None] + sh)
    in_c = (cols >= p["x0"][:, None]) & (cols < p["x0"][:, None] + sw)
    keep = ~(in_r[:, :, None] & in_c[:, None, :])  # (B, H, W)
    return x * keep[:, None].to(x.dtype)


@dataclass(frozen=True)
class Policy:
    name: str
    sample: Callable[..., dict[str, torch.Tensor]]
    apply: Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]


POLICIES: dict[str, Policy] = {
    "color": Policy("color", color_params, color_apply),
    "translation": Policy("translation", translation_params, translation_apply),
    "cutout": Policy("cutout", cutout_params, cutout_apply),
}
assert tuple(POLICIES) == AUGMENT_OPS, "config.gan.AUGMENT_OPS names what augment.policy accepts: keep it in step"


class DiffAugment:
    """Callable ``x -> augmented x`` for the policies, in the order given; identity when there are none."""

    def __init__(self, policy: str = "", generator: torch.Generator | None = None, p: float = 1.0):
        self.names = parse_policy(policy)
        self.generator = generator
        self.p = float(p)

    def __bool__(self) -> bool:
        return bool(self.names)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.names:
            pol = POLICIES[name]
            out = pol.apply(x, pol.sample(x, self.generator))
            x = out if self.p >= 1.0 else torch.where(_uniform(x, self.generator) < self.p, out, x)
        return x.contiguous(memory_format=torch.contiguous_format)

    def __repr__(self) -> str:
        return f"DiffAugment({','.join(self.names) or 'none'}{f', p={self.p}' if self.p < 1 else ''})"
