"""Density and coverage (Naeem et al. 2020); see ``_manifold`` for the definitions."""

from __future__ import annotations

import numpy as np

from histosynth.evaluation.metrics._manifold import manifold_metrics


def compute(real: np.ndarray, fake: np.ndarray, *, dc_k: int = 5, device: str = "auto", block_elems: int = 1 << 24, **_: object) -> dict:
    return manifold_metrics(real, fake, pr_k=None, dc_k=dc_k, device=device, block_elems=block_elems)
