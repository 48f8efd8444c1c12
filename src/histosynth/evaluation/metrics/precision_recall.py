"""Improved precision and recall (Kynkäänniemi et al. 2019) and their F1; see ``_manifold`` for the definitions."""

from __future__ import annotations

import numpy as np

from histosynth.evaluation.metrics._manifold import manifold_metrics


def compute(real: np.ndarray, fake: np.ndarray, *, pr_k: int = 3, device: str = "auto", block_elems: int = 1 << 24, **_: object) -> dict:
    return manifold_metrics(real, fake, pr_k=pr_k, dc_k=None, device=device, block_elems=block_elems)
