"""A 12-d feature "network" for search tests: per-channel mean and std at two scales. Cheap enough that fitness
runs in milliseconds; importable by worker processes as ``cheap_extractor:extractor`` (tests/search on PYTHONPATH)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from histosynth.evaluation.features import Extractor


def _forward(x: torch.Tensor) -> torch.Tensor:
    x = x / 255.0
    small = F.avg_pool2d(x, 4)
    return torch.cat([x.mean((2, 3)), x.std((2, 3)), small.mean((2, 3)) ** 2, small.std((2, 3))], dim=1)


def extractor(device: torch.device, weights=None) -> Extractor:
    return Extractor(name="cheap-test", dim=12, preprocess="channel mean/std at 1x and 1/4", forward=_forward, device=device, weights="none")
