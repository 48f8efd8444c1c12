"""Fréchet Inception Distance (Heusel et al. 2017): ``|mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2)``.

The only delicate term is ``tr sqrt(S1 S2)``. The default route computes it exactly for positive semi-definite
covariances without ever forming a non-symmetric matrix square root:

* factor ``S1 = F F^T`` (Cholesky; if ``S1`` is singular, ``F = V sqrt(max(lambda, 0))`` from ``eigh``; when only
  n1 <= dim samples exist, ``F`` is simply the centred features / sqrt(n1 - 1));
* the eigenvalues of ``S1 S2`` equal those of the symmetric PSD ``M = F^T S2 F``, so
  ``tr sqrt(S1 S2) = sum sqrt(max(eigvalsh(M), 0))``;
* with features of both sets and n1, n2 <= dim / 2 (common for medical sets: fewer than 1024 patches),
  ``M = G G^T / ((n1-1)(n2-1))`` with ``G = X1c X2c^T``, and the trace is the sum of the singular values of G
  (``gram-svd``); when the smaller set has <= dim samples, ``F`` is its centred features and ``M`` is n x n
  (``lowrank-eigh``). Otherwise (``covariance``) the dim x dim covariances are factored; a singular one (only
  reachable from statistics) gets a rank-revealing eigh factor, and eigenvalues of ``M`` at rounding-noise level
  count as 0. Every route is tested against a 40-digit mpmath evaluation.

This is exact for singular covariances (no epsilon needed) and has no complex parts to discard. ``method="sqrtm"``
reproduces pytorch-fid instead: ``scipy.linalg.sqrtm(S1 @ S2)``, retried with ``eps * I`` added to both covariances
when the result is not finite, real part kept when the imaginary part is below 1e-3 (else an error).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch

from histosynth.errors import HistosynthError
from histosynth.evaluation.metrics._linalg import as_backend, check_pair, mean_cov, to_numpy


def _noise_floor(lam: np.ndarray, size: int) -> float:
    """Eigenvalues below this are rounding noise (numpy's matrix_rank tolerance): treated as exact zeros."""
    return size * np.finfo(np.float64).eps * max(float(np.abs(lam).max(initial=0.0)), np.finfo(np.float64).tiny)


def _factor(sigma: np.ndarray) -> np.ndarray:
    """``F`` with ``F F^T = sigma``: Cholesky when positive definite, else ``V sqrt(lambda)`` over the numerical
    range of ``sigma`` (rank-deficient covariances give a narrower ``F``, so no noise eigenvalue enters later)."""
    try:
        return np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        lam, vec = np.linalg.eigh(sigma)
        keep = lam > _noise_floor(lam, sigma.shape[0])
        return vec[:, keep] * np.sqrt(lam[keep])


def _sum_sqrt_eigvalsh(m: np.ndarray) -> float:
    """``tr sqrt(M)`` of a symmetric PSD matrix; noise-level eigenvalues count as 0 (their square roots would not)."""
    lam = np.linalg.eigvalsh((m + m.T) * 0.5)
    lam = np.where(lam > _noise_floor(lam, m.shape[0]), lam, 0.0)
    return float(np.sqrt(lam).sum())


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr sqrt(sigma1 @ sigma2)`` for PSD covariances, exactly (see module doc)."""
    f = _factor(sigma1)
    return _sum_sqrt_eigvalsh(f.T @ sigma2 @ f)


def _sqrtm_trace(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> tuple[float, dict]:
    info: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's singular-matrix / `disp` deprecation chatter; handled below
        covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
            info["fid_eps_offset"] = eps
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise HistosynthError(
                f"FID (sqrtm route): matrix square root has an imaginary component of {np.max(np.abs(covmean.imag)):.3g}",
                "use the default fid_method=auto (exact for singular covariances)",
            )
        covmean = covmean.real
    return float(np.trace(covmean)), info


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, method: str = "eigh", eps: float = 1e-6) -> float:
    """FID from statistics (mean vector, covariance matrix of each set)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"mismatched FID statistics: {mu1.shape}, {sigma1.shape} vs {mu2.shape}, {sigma2.shape}")
    diff = mu1 - mu2
    if method == "sqrtm":
        tr, _ = _sqrtm_trace(sigma1, sigma2, eps)
    elif method in ("eigh", "auto"):
        tr = trace_sqrt_product(sigma1, sigma2)
    else:
        raise ValueError(f"unknown FID method '{method}' (auto, eigh, sqrtm)")
    return _finish(float(diff @ diff), float(np.trace(sigma1)), float(np.trace(sigma2)), tr)


def _finish(mean_term: float, tr1: float, tr2: float, tr_sqrt: float) -> float:
    value = mean_term + tr1 + tr2 - 2.0 * tr_sqrt
    if value < 0 and -value <= 1e-9 * max(tr1 + tr2, 1e-300):
        value = 0.0  # rounding noise of an identical pair; a larger negative value would be a bug, so it is kept
    return value


def compute(
    real: np.ndarray,
    fake: np.ndarray,
    *,
    fid_method: str = "auto",
    fid_eps: float = 1e-6,
    real_stats: tuple[np.ndarray, np.ndarray] | None = None,
    device: str = "auto",
    **_: object,
) -> dict[str, float | str]:
    """FID between two feature arrays (n, dim). ``real_stats`` (mu, sigma) skips recomputing the real covariance."""
    check_pair(real, fake)
    x_r, x_f = as_backend(real, device), as_backend(fake, device)
    n_r, n_f, dim = x_r.shape[0], x_f.shape[0], x_r.shape[1]
    if min(n_r, n_f) < 2:
        raise HistosynthError(f"FID needs at least 2 samples per set (got {n_r} real, {n_f} fake)")
    small = dim // 2  # both sets below this: Gram + SVD beats computing any covariance (measured, 2048-d)
    if fid_method == "sqrtm" or (fid_method in ("auto", "eigh") and min(n_r, n_f) > dim):
        mu_r, s_r = real_stats if real_stats is not None else mean_cov(x_r)
        mu_f, s_f = mean_cov(x_f)
        value = frechet_distance(mu_r, s_r, mu_f, s_f, method="sqrtm" if fid_method == "sqrtm" else "eigh", eps=fid_eps)
        return {"fid": value, "fid_route": "sqrtm" if fid_method == "sqrtm" else "covariance"}
    if fid_method not in ("auto", "eigh"):
        raise ValueError(f"unknown FID method '{fid_method}' (auto, eigh, sqrtm)")
    # low-rank routes: work in sample space, exact
    mu_r, mu_f = x_r.mean(0), x_f.mean(0)
    c_r, c_f = x_r - mu_r, x_f - mu_f
    diff = mu_r - mu_f
    tr_r = float((c_r * c_r).sum()) / (n_r - 1)
    tr_f = float((c_f * c_f).sum()) / (n_f - 1)
    if n_r <= small and n_f <= small:
        g = to_numpy(c_r @ c_f.T)
        tr = float(np.linalg.svd(g, compute_uv=False).sum()) / np.sqrt((n_r - 1) * (n_f - 1))
        route = "gram-svd"
    else:  # the smaller set (<= dim samples) factors its own covariance by its centred features
        real_is_small = n_r <= n_f
        c_small, n_small, big_x = (c_r, n_r, x_f) if real_is_small else (c_f, n_f, x_r)
        s_big = real_stats[1] if (not real_is_small and real_stats is not None) else mean_cov(big_x)[1]
        if isinstance(c_small, torch.Tensor):
            s_big = torch.as_tensor(s_big, dtype=torch.float64, device=c_small.device)
        m = (c_small @ s_big @ c_small.T) / (n_small - 1)
        tr = _sum_sqrt_eigvalsh(to_numpy(m))
        route = "lowrank-eigh"
    return {"fid": _finish(float(diff @ diff), tr_r, tr_f, tr), "fid_route": route}


def per_class(
    real: np.ndarray,
    real_classes: np.ndarray,
    fake: np.ndarray,
    fake_classes: np.ndarray,
    classes: list[str],
    **options: object,
) -> tuple[dict[str, float], dict[str, str]]:
    """FID of each class's fakes against the same class's real samples (as class-conditional GAN papers report
    it), with the options of :func:`compute`. ``real_classes`` / ``fake_classes`` name each row's class.

    -> (class -> FID, class -> why it was not computed): a class with fewer than 2 samples in either set has no
    covariance, so it is skipped with its counts rather than failing the whole evaluation."""
    values: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for c in classes:
        r, f = real[real_classes == c], fake[fake_classes == c]
        if len(r) == len(f) == 0:
            continue
        if min(len(r), len(f)) < 2:
            skipped[c] = f"FID needs >= 2 samples per set, got {len(r)} real and {len(f)} fake"
            continue
        values[c] = float(compute(r, f, **options)["fid"])
    return values, skipped
