"""FID against plain numpy/scipy references and against pytorch-fid's and torch-fidelity's own functions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from histosynth.evaluation.metrics import fid as F

pytestmark = pytest.mark.numerics


def feats(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """Inception-like features: non-negative, correlated, not centred."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    return np.maximum(rng.standard_normal((n, d)) @ mix + 0.3 + shift, 0.0)


def ref_fid_sqrtm(x: np.ndarray, y: np.ndarray) -> float:
    """Textbook FID: scipy.linalg.sqrtm of the covariance product (accurate for full-rank covariances)."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def ref_fid_mpmath(x: np.ndarray, y: np.ndarray, dps: int = 40) -> float:
    """High-precision reference for n <= dim (singular covariances), 40 significant digits with mpmath.

    With S1 = A^T A, S2 = B^T B (A, B the centred features / sqrt(n - 1)), the non-zero eigenvalues of S1 S2 are
    those of (A B^T)(A B^T)^T, so tr sqrt(S1 S2) = sum of sqrt(eigenvalues of C C^T), C = A B^T (an identity, not an
    approximation); evaluated here far beyond float64 so float64 rounding of any route is visible against it.
    """
    import mpmath

    mpmath.mp.dps = dps
    xc, yc = x - x.mean(0), y - y.mean(0)
    c = (mpmath.matrix(xc.tolist()) * mpmath.matrix(yc.tolist()).T) / mpmath.sqrt((len(x) - 1) * (len(y) - 1))
    ev = mpmath.eigsy(c * c.T, eigvals_only=True)
    tr_sqrt = mpmath.fsum(mpmath.sqrt(e) if e > 0 else 0 for e in ev)
    mean = mpmath.fsum((mpmath.mpf(a) - mpmath.mpf(b)) ** 2 for a, b in zip(x.mean(0), y.mean(0)))
    tr1 = mpmath.fsum(mpmath.mpf(v) ** 2 for v in xc.ravel()) / (len(x) - 1)
    tr2 = mpmath.fsum(mpmath.mpf(v) ** 2 for v in yc.ravel()) / (len(y) - 1)
    return float(mean + tr1 + tr2 - 2 * tr_sqrt)


FULL = [(400, 350, 64), (1000, 1000, 128)]  # n > dim: full-rank covariances
# n <= dim for one or both sets: singular covariances, through each route
LOW = [(30, 20, 96, "gram-svd"), (60, 60, 128, "gram-svd"), (40, 36, 64, "lowrank-eigh"), (50, 45, 64, "lowrank-eigh"), (60, 20, 64, "lowrank-eigh")]


@pytest.mark.parametrize("n_r,n_f,d", FULL)
def test_full_rank_matches_scipy_sqrtm(n_r, n_f, d):
    x, y = feats(n_r, d, 1), feats(n_f, d, 2, shift=0.05)
    ref = ref_fid_sqrtm(x, y)
    got = F.compute(x, y, device="cpu")
    assert got["fid_route"] == "covariance"
    assert got["fid"] == pytest.approx(ref, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("n_r,n_f,d,route", LOW)
def test_singular_covariances_exact(n_r, n_f, d, route):
    x, y = feats(n_r, d, 3), feats(n_f, d, 4, shift=0.05)
    ref = ref_fid_mpmath(x, y)
    got = F.compute(x, y, device="cpu")
    assert got["fid_route"] == route
    assert got["fid"] == pytest.approx(ref, rel=1e-11)
    # the statistics route (covariance route; rank-revealing eigh factor of the singular covariance) agrees too
    stats = F.frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert stats == pytest.approx(ref, rel=1e-9)


def test_one_small_set_uses_lowrank_route():
    x, y = feats(300, 64, 15), feats(20, 64, 16, shift=0.05)
    got = F.compute(x, y, device="cpu")
    assert got["fid_route"] == "lowrank-eigh"
    ref = F.frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert got["fid"] == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("n,d", [(500, 64), (50, 128)])
def test_self_distance_is_zero(n, d):
    x = feats(n, d, 5)
    tr = np.trace(np.cov(x, rowvar=False))
    assert abs(F.compute(x, x.copy(), device="cpu")["fid"]) <= 1e-9 * tr
    assert abs(F.frechet_distance(x.mean(0), np.cov(x, rowvar=False), x.mean(0), np.cov(x, rowvar=False))) <= 1e-9 * tr


def test_real_stats_shortcut_is_identical():
    x, y = feats(300, 32, 6), feats(200, 32, 7)
    stats = (x.mean(0), np.cov(x, rowvar=False))
    assert F.compute(x, y, real_stats=stats, device="cpu")["fid"] == pytest.approx(F.compute(x, y, device="cpu")["fid"], rel=1e-12)


def test_matches_pytorch_fid():
    fs = pytest.importorskip("pytorch_fid.fid_score", reason="metrics-ref extra (pytorch-fid) not installed")
    x, y = feats(600, 96, 8), feats(500, 96, 9, shift=0.1)
    theirs = fs.calculate_frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert F.compute(x, y, device="cpu")["fid"] == pytest.approx(theirs, rel=1e-9)
    # the sqrtm route is pytorch-fid's algorithm
    assert F.compute(x, y, fid_method="sqrtm", device="cpu")["fid"] == pytest.approx(theirs, rel=1e-12)


def test_matches_torch_fidelity():
    mf = pytest.importorskip("torch_fidelity.metric_fid", reason="metrics-ref extra (torch-fidelity) not installed")
    import torch

    x, y = feats(600, 96, 10), feats(500, 96, 11, shift=0.1)
    s1, s2 = mf.fid_features_to_statistics(torch.from_numpy(x)), mf.fid_features_to_statistics(torch.from_numpy(y))
    theirs = mf.fid_statistics_to_metric(s1, s2, verbose=False)[mf.KEY_METRIC_FID]
    assert F.compute(x, y, device="cpu")["fid"] == pytest.approx(theirs, rel=1e-9)


def test_singular_case_reference_libraries_are_less_exact():
    """n < dim: pytorch-fid's sqrtm(+eps) and torch-fidelity's eigvals drift from the exact value; we do not."""
    fs = pytest.importorskip("pytorch_fid.fid_score")
    x, y = feats(60, 128, 12), feats(50, 128, 13, shift=0.05)
    exact = ref_fid_mpmath(x, y)
    ours = F.compute(x, y, device="cpu")["fid"]
    theirs = fs.calculate_frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert abs(ours - exact) <= 1e-11 * exact
    assert abs(ours - exact) <= abs(theirs - exact)
    assert theirs == pytest.approx(exact, rel=1e-3)  # still close: same quantity


def test_sqrtm_route_survives_a_singular_product():
    # a zero covariance makes the product singular -> pytorch-fid's eps retry path
    x = np.ones((10, 8))
    y = feats(10, 8, 14)
    got = F.compute(x, y, fid_method="sqrtm", device="cpu")
    assert np.isfinite(got["fid"])


def test_bad_inputs():
    with pytest.raises(ValueError):
        F.compute(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(Exception, match="at least 2"):
        F.compute(np.zeros((1, 3)), np.zeros((5, 3)))
