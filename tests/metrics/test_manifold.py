"""Improved precision/recall and density/coverage against brute-force O(n^2) loops and torch-fidelity's prc."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from histosynth.evaluation import metrics
from histosynth.evaluation.metrics._manifold import manifold_metrics

pytestmark = pytest.mark.numerics


def feats(n, d, seed, shift=0.0):
    return np.random.default_rng(seed).standard_normal((n, d)) + shift


def dist(a, b):
    return float(np.sqrt(((a - b) ** 2).sum()))


def knn_radius(x, i, k):
    """Distance from x[i] to its k-th nearest neighbour among the others (brute force)."""
    return sorted(dist(x[i], x[j]) for j in range(len(x)) if j != i)[k - 1]


def brute(real, fake, k_pr=3, k_dc=5):
    rr = [knn_radius(real, i, k_pr) for i in range(len(real))]
    rf = [knn_radius(fake, j, k_pr) for j in range(len(fake))]
    rd = [knn_radius(real, i, k_dc) for i in range(len(real))]
    d = [[dist(f, r) for r in real] for f in fake]
    precision = np.mean([any(d[j][i] <= rr[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(d[j][i] <= rf[j] for j in range(len(fake))) for i in range(len(real))])
    density = sum(d[j][i] < rd[i] for j in range(len(fake)) for i in range(len(real))) / (k_dc * len(fake))
    coverage = np.mean([min(d[j][i] for j in range(len(fake))) < rd[i] for i in range(len(real))])
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "density": density, "coverage": coverage}


@pytest.mark.parametrize("n_r,n_f,d,shift", [(60, 50, 8, 0.3), (40, 70, 16, 1.0), (50, 50, 4, 0.0)])
@pytest.mark.parametrize("block_elems", [1 << 24, 97])  # one block, and many small blocks
def test_matches_brute_force(n_r, n_f, d, shift, block_elems):
    real, fake = feats(n_r, d, 1), feats(n_f, d, 2, shift)
    ref = brute(real, fake)
    got = manifold_metrics(real, fake, pr_k=3, dc_k=5, device="cpu", block_elems=block_elems)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_registry_split_and_combined_agree():
    real, fake = feats(80, 8, 3), feats(70, 8, 4, 0.5)
    both, details = metrics.compute(["precision_recall", "density_coverage"], real, fake, device="cpu")
    pr = metrics.METRICS["precision_recall"](real, fake, device="cpu")
    dc = metrics.METRICS["density_coverage"](real, fake, device="cpu")
    for k in ("precision", "recall", "f1"):
        assert both[k] == pr[k]
    for k in ("density", "coverage"):
        assert both[k] == dc[k]
    assert details["pr_k"] == 3 and details["dc_k"] == 5


def test_identical_sets():
    real = feats(100, 8, 5)
    got = manifold_metrics(real, real.copy(), device="cpu")
    assert got["precision"] == 1.0 and got["recall"] == 1.0 and got["coverage"] == 1.0
    assert got["density"] == pytest.approx(1.0, abs=0.2)


def test_matches_torch_fidelity():
    mp = pytest.importorskip("torch_fidelity.metric_prc", reason="metrics-ref extra (torch-fidelity) not installed")
    real, fake = feats(120, 16, 6), feats(100, 16, 7, 0.4)
    theirs = mp.prc_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), prc_neighborhood=3, prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    ours = manifold_metrics(real, fake, pr_k=3, dc_k=None, device="cpu")
    # torch-fidelity averages in float32: equal counts show up as agreement to ~1e-7
    assert ours["precision"] == pytest.approx(theirs[mp.KEY_METRIC_PRECISION], abs=1e-6)
    assert ours["recall"] == pytest.approx(theirs[mp.KEY_METRIC_RECALL], abs=1e-6)
    assert ours["f1"] == pytest.approx(theirs[mp.KEY_METRIC_F_SCORE], abs=1e-6)


def test_too_few_samples():
    with pytest.raises(Exception, match="need more than 5 samples"):
        manifold_metrics(feats(5, 4, 8), feats(20, 4, 9), pr_k=3, dc_k=5, device="cpu")


def test_inception_score_reference():
    """IS on logits: uniform predictions -> 1; confident, evenly spread predictions -> number of classes."""
    uniform = np.zeros((40, 10))
    assert metrics.METRICS["is"](None, uniform, is_splits=4)["is_mean"] == pytest.approx(1.0)
    confident = np.full((40, 10), -50.0)
    confident[np.arange(40), np.arange(40) % 10] = 50.0
    assert metrics.METRICS["is"](None, confident, is_splits=4)["is_mean"] == pytest.approx(10.0, rel=1e-6)


def test_unknown_names_and_options():
    with pytest.raises(Exception, match="unknown metric"):
        metrics.resolve_names("fid,bogus")
    with pytest.raises(Exception, match="unknown metric option"):
        metrics.options(kid_subset=3)
    assert metrics.resolve_names("pr, dc,fid,pr") == ["precision_recall", "density_coverage", "fid"]
