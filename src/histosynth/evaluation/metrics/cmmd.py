"""CMMD (Jayasumana et al. 2024, "Rethinking FID"): MMD^2 with a Gaussian RBF kernel between embedding sets.

As the reference code (google-research ``cmmd/distance.py``): embeddings are L2-normalised (``cmmd_normalize``),
``k(x, y) = exp(-|x - y|^2 / (2 sigma^2))`` with ``sigma = 10``, and the *biased* (V-statistic) estimator

    MMD^2 = mean(K_xx) + mean(K_yy) - 2 mean(K_xy)      (diagonals included)

is multiplied by ``scale = 1000`` for readability. Unlike FID it assumes no Gaussian feature distribution and is
unbiased in the sample size up to O(1/n).

The paper's number uses CLIP ViT-L/14@336px image embeddings (extractor ``clip-vit-l14-336``). The same formula
on other features is reported under the same key but labelled (``cmmd_features``) as *not CLIP-CMMD*, so it is
never set beside the paper's values. Sums are float64, in row blocks of at most ``block_elems`` kernel entries.
"""

from __future__ import annotations

import numpy as np
import torch

from histosynth.errors import HistosynthError
from histosynth.evaluation.metrics._linalg import as_tensor, check_pair, full_precision_matmul, row_blocks, sq_dists

CLIP_EXTRACTORS = ("clip-vit-l14-336",)  # the network of the paper


def _kernel_mean(a: torch.Tensor, b: torch.Tensor, gamma: float, block_elems: int) -> float:
    a_sq, b_sq = (a * a).sum(1), (b * b).sum(1)
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for sl in row_blocks(a.shape[0], b.shape[0], block_elems):
        total += torch.exp(-gamma * sq_dists(a[sl], b, a_sq[sl], b_sq)).sum()
    return float(total) / (a.shape[0] * b.shape[0])


def mmd_rbf(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *, sigma: float = 10.0, device: str = "auto", block_elems: int = 1 << 24) -> float:
    """Biased MMD^2 between the rows of ``x`` and ``y`` with an RBF kernel of bandwidth ``sigma`` (float64)."""
    check_pair(x, y)
    tx, ty = as_tensor(x, device), as_tensor(y, device)
    gamma = 1.0 / (2.0 * float(sigma) ** 2)
    with full_precision_matmul():
        return _kernel_mean(tx, tx, gamma, block_elems) + _kernel_mean(ty, ty, gamma, block_elems) - 2.0 * _kernel_mean(tx, ty, gamma, block_elems)


def label(extractor: str) -> str:
    """What a ``cmmd`` value computed on ``extractor`` features may be called."""
    if extractor in CLIP_EXTRACTORS:
        return f"CLIP-CMMD ({extractor}; comparable with Jayasumana et al. 2024)"
    return f"MMD-RBF on {extractor} features (NOT CLIP-CMMD: not comparable with published CMMD)"


def compute(
    real: np.ndarray,
    fake: np.ndarray,
    *,
    cmmd_sigma: float = 10.0,
    cmmd_scale: float = 1000.0,
    cmmd_normalize: bool = True,
    device: str = "auto",
    block_elems: int = 1 << 24,
    **_: object,
) -> dict:
    check_pair(real, fake)
    if len(real) < 2 or len(fake) < 2:
        raise HistosynthError(f"CMMD needs at least 2 samples per set (got {len(real)} real, {len(fake)} fake)")
    x, y = as_tensor(real, device), as_tensor(fake, device)
    if cmmd_normalize:
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        y = y / y.norm(dim=1, keepdim=True).clamp_min(1e-12)
    value = float(cmmd_scale) * mmd_rbf(x, y, sigma=cmmd_sigma, device=x.device, block_elems=block_elems)
    # only ``cmmd`` is a float: the registry files floats under metrics and everything else under details
    return {"cmmd": value, "cmmd_kernel": {"sigma": float(cmmd_sigma), "scale": float(cmmd_scale), "normalize": bool(cmmd_normalize), "estimator": "biased (V-statistic)"}}
