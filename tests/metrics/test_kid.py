"""KID against a plain numpy reference (same subsets) and torch-fidelity's kid_features_to_metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from histosynth.evaluation.metrics import kid as K

pytestmark = pytest.mark.numerics


def feats(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.maximum(rng.standard_normal((n, d)) + 0.3 + shift, 0.0)


def ref_kid(real, fake, subsets, subset_size, seed, degree=3, coef0=1.0):
    """Textbook unbiased MMD^2 per subset, with the draws of np.random.RandomState(seed): fake first, then real."""
    d = real.shape[1]
    m = min(subset_size, len(real), len(fake))
    rng = np.random.RandomState(seed)
    vals = []
    for _ in range(subsets):
        x = fake[rng.choice(len(fake), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        kxx = (x @ x.T / d + coef0) ** degree
        kyy = (y @ y.T / d + coef0) ** degree
        kxy = (x @ y.T / d + coef0) ** degree
        vals.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())
    return float(np.mean(vals)), float(np.std(vals)), m


@pytest.mark.parametrize("route", ["gram", "subsets"])
@pytest.mark.parametrize("n_r,n_f,size", [(120, 90, 50), (60, 200, 1000), (300, 300, 100)])
def test_matches_reference(route, n_r, n_f, size):
    real, fake = feats(n_r, 64, 1), feats(n_f, 64, 2, shift=0.1)
    mean, std, m = ref_kid(real, fake, 20, size, seed=7)
    got = K.compute(real, fake, kid_subsets=20, kid_subset_size=size, seed=7, kid_route=route, kid_dtype="float64", device="cpu", block_elems=4096)
    assert got["kid_subset_size"] == m == min(size, n_r, n_f)
    assert got["kid_mean"] == pytest.approx(mean, rel=1e-10, abs=1e-14)
    assert got["kid_std"] == pytest.approx(std, rel=1e-8, abs=1e-14)
    fast = K.compute(real, fake, kid_subsets=20, kid_subset_size=size, seed=7, kid_route=route, device="cpu", block_elems=4096)
    assert fast["kid_dtype"] == "float32"  # the default: float32 inner products, float64 everything else
    assert fast["kid_mean"] == pytest.approx(mean, rel=1e-5)


def test_routes_agree_and_auto_picks_cheaper():
    real, fake = feats(400, 32, 3), feats(400, 32, 4, shift=0.05)
    a = K.compute(real, fake, kid_subsets=50, kid_subset_size=1000, device="cpu")
    b = K.compute(real, fake, kid_subsets=50, kid_subset_size=1000, kid_route="subsets", device="cpu")
    assert a["kid_dtype"] == b["kid_dtype"] == "float32"
    assert a["kid_route"] == "gram"  # sets no larger than the subsets: Gram once is cheaper
    assert a["kid_mean"] == pytest.approx(b["kid_mean"], rel=1e-7)  # float32 products summed in different orders
    small = K.compute(feats(3000, 8, 5), feats(3000, 8, 6), kid_subsets=2, kid_subset_size=50, device="cpu")
    assert small["kid_route"] == "subsets"


def test_identical_sets_near_zero_and_shift_positive():
    real = feats(200, 32, 8)
    same = K.compute(real, real.copy(), kid_subsets=10, device="cpu")
    far = K.compute(real, feats(200, 32, 9, shift=1.0), kid_subsets=10, device="cpu")
    assert abs(same["kid_mean"]) < 1e-2 * far["kid_mean"]  # unbiased estimate: zero mean, subset noise
    assert far["kid_mean"] > 0


def test_matches_torch_fidelity():
    mk = pytest.importorskip("torch_fidelity.metric_kid", reason="metrics-ref extra (torch-fidelity) not installed")
    real, fake = feats(150, 64, 10), feats(130, 64, 11, shift=0.1)
    theirs = mk.kid_features_to_metric(
        torch.from_numpy(fake), torch.from_numpy(real), kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1, kid_subsets=25, kid_subset_size=100, rng_seed=11, verbose=False,
    )  # fmt: skip
    ours = K.compute(real, fake, kid_subset_size=100, kid_subsets=25, seed=11, kid_dtype="float64", device="cpu")
    assert ours["kid_mean"] == pytest.approx(theirs[mk.KEY_METRIC_KID_MEAN], rel=1e-10)
    assert ours["kid_std"] == pytest.approx(theirs[mk.KEY_METRIC_KID_STD], rel=1e-8)
    # torch-fidelity's usual float32 features: the same subsets, agreement to float32 rounding
    theirs32 = mk.kid_features_to_metric(
        torch.from_numpy(fake).float(), torch.from_numpy(real).float(), kid_kernel="poly", kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1, kid_subsets=25, kid_subset_size=100, rng_seed=11, verbose=False,
    )  # fmt: skip
    assert ours["kid_mean"] == pytest.approx(theirs32[mk.KEY_METRIC_KID_MEAN], rel=1e-4)


def test_small_sets_and_errors():
    got = K.compute(feats(7, 16, 12), feats(5, 16, 13), kid_subsets=3, device="cpu")
    assert got["kid_subset_size"] == 5
    with pytest.raises(Exception, match="at least 2"):
        K.compute(feats(1, 16, 12), feats(5, 16, 13))
