"""Perceptual path length (Karras et al. 2019, StyleGAN; the same estimator as StyleGAN2-ADA's ``metrics/perceptual_path_length.py``).

For ``ppl_samples`` latent pairs (z0, z1) ~ N(0, I) and t ~ U(0, 1) (``ppl_sampling="full"``; ``"end"``: t = 0)::

    ppl_i = d(G(interp(z0, z1, t)), G(interp(z0, z1, t + eps))) / eps^2,   eps = 1e-4

and PPL is the mean of the ppl_i between their 1st and 99th percentiles (StyleGAN's outlier filter: lower/higher
percentile interpolation). A class-conditional generator keeps one class per pair (StyleGAN2-ADA's convention).

* ``interp``: ``slerp`` (default, as StyleGAN in Z): the direction moves along the great circle between z0/|z0| and
  z1/|z1|; since a DCGAN has no input normalisation the result is rescaled to the linearly interpolated norm (for
  unit-norm endpoints this is exactly StyleGAN's slerp). ``lerp``: straight line (StyleGAN's choice in W).
* ``d``: LPIPS is the paper's distance, but its learned linear weights are not available offline. The distance
  here is the *unweighted* LPIPS form ("baseline" in Zhang et al. 2018) on ImageNet VGG-16: activations after
  relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 are unit-normalised along channels, squared differences are
  summed over channels, averaged over positions and summed over the five layers. Images run at their own
  resolution (upsampled bilinearly to 32 px when smaller), on ImageNet-normalised [0, 1] values.
  ``ppl_distance``: ``vgg16`` (weights by the rules of ``files.pretrained.vgg16_weights``: path / env / cache /
  checksummed download; offline without them -> a clear error), ``untrained-vgg16`` (seeded random weights,
  labelled not comparable) or ``pixel`` (sum over channels of squared [-1, 1] pixel differences, averaged over
  positions; for checks). Every result states its distance (``ppl_distance`` in details): these values are
  *not* comparable with published LPIPS-based PPL, only with each other at equal settings.

Images stay float32 — never quantized to uint8, which would erase differences of order eps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from histosynth.errors import HistosynthError

DISTANCES = ("vgg16", "untrained-vgg16", "pixel")
_VGG_TAPS = (3, 8, 15, 22, 29)  # torchvision vgg16.features indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
MIN_SIZE = 32


@dataclass
class GeneratorHandle:
    """What PPL needs of a generator: ``fn(z, y) -> images`` (float NCHW in [-1, 1]), its latent size, where it
    runs, and optional class ids (one per pair, cycled) for a class-conditional generator."""

    fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    latent_dim: int
    device: torch.device
    class_ids: np.ndarray | None = None


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Great-circle interpolation of the directions of a and b (rows), rescaled to the lerped norm."""
    t = t.view(-1, 1)
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na, b / nb
    cos = (ua * ub).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    angle = torch.acos(cos) * t
    ortho = _normalize(ub - cos * ua)
    direction = _normalize(ua * torch.cos(angle) + ortho * torch.sin(angle))
    return direction * (na + (nb - na) * t)


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return a + (b - a) * t.view(-1, 1)


INTERPOLATIONS = {"slerp": slerp, "lerp": lerp}


class VGGDistance(torch.nn.Module):
    """Unweighted LPIPS-form distance on VGG-16 (see module doc); ``forward(x0, x1) -> (N,)``."""

    def __init__(self, state_dict: dict | None, seed: int = 0):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            features = make_layers(cfgs["D"], batch_norm=False)  # VGG-16's conv trunk only (no 120M-param classifier)
        if state_dict is not None:
            features.load_state_dict({k[len("features.") :]: v for k, v in state_dict.items() if k.startswith("features.")})
        self.features = features[: _VGG_TAPS[-1] + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = ((x.float() + 1.0) / 2.0 - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in _VGG_TAPS:
                out.append(h / (h.norm(dim=1, keepdim=True) + 1e-10))
        return out

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        both = _min_size(torch.cat([x0, x1]))
        total = torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device)
        for f in self._taps(both):
            a, b = f[: x0.shape[0]], f[x0.shape[0] :]
            total += ((a - b) ** 2).sum(1).mean((1, 2)).double()
        return total


def _min_size(x: torch.Tensor) -> torch.Tensor:
    if min(x.shape[-2:]) >= MIN_SIZE:
        return x
    scale = MIN_SIZE / min(x.shape[-2:])
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


def pixel_distance(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    return ((x0.double() - x1.double()) ** 2).sum(1).mean((1, 2))


_distances: dict[tuple, tuple[Callable, dict[str, Any]]] = {}


def get_distance(name: str, device: torch.device, weights: str | Path | None = None) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], dict[str, Any]]:
    """-> (distance fn, description {name, weights, weights_sha256, comparable, note}); loaded once per process."""
    if name not in DISTANCES:
        raise HistosynthError(f"unknown PPL distance '{name}'", f"use one of: {', '.join(DISTANCES)}")
    from histosynth.files.pretrained import vgg16_weights
    from histosynth.files.weights import sha256_cached

    key = (name, str(device), str(weights or ""))
    if key in _distances:
        return _distances[key]
    if name == "pixel":
        desc = {"name": "pixel", "weights": "none", "note": "squared pixel differences: a check, not a perceptual distance"}
        _distances[key] = (pixel_distance, desc)
    elif name == "vgg16":
        path = vgg16_weights(weights)  # clear error offline without the file
        net = VGGDistance(torch.load(path, map_location="cpu", weights_only=True)).to(device)
        desc = {"name": "vgg16", "weights": str(path), "weights_sha256": sha256_cached(path), "note": "unweighted LPIPS form on ImageNet VGG-16 (LPIPS lin weights are not available offline): not comparable with LPIPS-based PPL"}
        _distances[key] = (net, desc)
    else:
        net = VGGDistance(None, seed=0).to(device)
        desc = {"name": "untrained-vgg16", "weights": "random(seed=0)", "note": "random VGG-16 weights: not comparable with anything published"}
        _distances[key] = (net, desc)
    return _distances[key]


def path_lengths(
    gen: GeneratorHandle,
    distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    n: int,
    *,
    epsilon: float = 1e-4,
    interp: str = "slerp",
    sampling: str = "full",
    seed: int = 0,
    batch_size: int = 64,
    pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> np.ndarray:
    """The ``n`` unfiltered per-pair values. Latents and t are drawn on the CPU with ``seed`` (same pairs on any
    device); ``pairs`` = (z0, z1, t) overrides the draws (tests)."""
    if interp not in INTERPOLATIONS:
        raise HistosynthError(f"unknown PPL interpolation '{interp}'", "use slerp (StyleGAN's choice in Z) or lerp")
    if sampling not in ("full", "end"):
        raise HistosynthError(f"unknown PPL sampling '{sampling}'", "use full (t ~ U(0, 1)) or end (t = 0)")
    if pairs is None:
        g = torch.Generator().manual_seed(int(seed))
        z0 = torch.randn(n, gen.latent_dim, generator=g)
        z1 = torch.randn(n, gen.latent_dim, generator=g)
        t = torch.rand(n, generator=g) * (1.0 if sampling == "full" else 0.0)
    else:
        z0, z1, t = pairs
        n = z0.shape[0]
    fn = INTERPOLATIONS[interp]
    out = np.empty(n, dtype=np.float64)
    with torch.inference_mode():
        for i in range(0, n, batch_size):
            sl = slice(i, min(i + batch_size, n))
            a, b, tt = z0[sl].double(), z1[sl].double(), t[sl].double()
            za, zb = fn(a, b, tt), fn(a, b, tt + epsilon)  # float64 interpolation, then float32 into G
            z = torch.cat([za, zb]).float().to(gen.device)
            y = None
            if gen.class_ids is not None:
                ids = np.resize(gen.class_ids, n)[sl]
                y = torch.as_tensor(np.concatenate([ids, ids]), device=gen.device)
            imgs = gen.fn(z, y).float()
            k = sl.stop - sl.start
            out[sl] = (distance(imgs[:k], imgs[k:]) / (epsilon**2)).double().cpu().numpy()
            if progress:
                progress("ppl", sl.stop, n)
    return out


def filtered_mean(values: np.ndarray) -> float:
    """StyleGAN's estimator: mean of the values within [1st percentile (lower), 99th percentile (higher)]."""
    lo = np.percentile(values, 1, method="lower")
    hi = np.percentile(values, 99, method="higher")
    return float(values[(values >= lo) & (values <= hi)].mean())


def compute(
    real: Any = None,
    fake: Any = None,
    *,
    generator: GeneratorHandle | None = None,
    ppl_samples: int = 1000,
    ppl_epsilon: float = 1e-4,
    ppl_interp: str = "slerp",
    ppl_sampling: str = "full",
    ppl_distance: str = "vgg16",
    ppl_weights: str | None = None,
    ppl_batch: int = 64,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    **_: object,
) -> dict:
    """Registry entry: ``real``/``fake`` features are not used; PPL needs the generator itself."""
    if generator is None:
        raise HistosynthError("PPL needs the generator, not feature arrays", "compute it through histosynth.evaluation.suite.evaluate_generator (histosynth evaluate --metrics ppl)")
    if int(ppl_samples) < 2:
        raise HistosynthError(f"ppl_samples={ppl_samples} is too small", "use hundreds of pairs (StyleGAN uses 100k)")
    dist, desc = get_distance(ppl_distance, generator.device, ppl_weights)
    vals = path_lengths(generator, dist, int(ppl_samples), epsilon=float(ppl_epsilon), interp=ppl_interp, sampling=ppl_sampling, seed=seed, batch_size=int(ppl_batch), progress=progress)
    return {
        "ppl": filtered_mean(vals),
        "ppl_setup": {"distance": desc, "epsilon": float(ppl_epsilon), "interp": ppl_interp, "sampling": ppl_sampling, "samples": int(ppl_samples), "space": "z", "filter": "1st-99th percentile"},
    }
