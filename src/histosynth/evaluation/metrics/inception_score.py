"""Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), mean and std over ``is_splits`` splits.

Needs classifier logits. The FID network used here (``inception-fid``, fid-helper's ``default_1.pt``) is the
pool-features part of the TF Inception only — it has no logits layer — so IS cannot be computed with it; the
evaluation refuses with a clear error rather than report a number from another network under the same name.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax

from histosynth.errors import HistosynthError


def compute(real_logits: np.ndarray | None, fake_logits: np.ndarray, *, is_splits: int = 10, **_: object) -> dict:
    """Only the fake logits are used (``real_logits`` is accepted for the registry's uniform signature)."""
    logits = np.asarray(fake_logits, dtype=np.float64)
    n = logits.shape[0]
    splits = max(1, min(int(is_splits), n))
    if n < 2:
        raise HistosynthError("the Inception Score needs at least 2 generated samples")
    logp = log_softmax(logits, axis=1)
    scores = []
    for part in np.array_split(logp, splits):
        logpy = np.log(np.exp(part).mean(0))
        kl = (np.exp(part) * (part - logpy[None, :])).sum(1).mean()
        scores.append(np.exp(kl))
    return {"is_mean": float(np.mean(scores)), "is_std": float(np.std(scores)), "is_splits": splits}
