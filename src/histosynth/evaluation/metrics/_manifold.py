"""k-NN manifold estimates shared by improved precision/recall and density/coverage.

One pass over real x real, fake x fake (only for recall) and fake x real squared distances (float64, row blocks),
serving both metric families, so asking for both costs one set of distance computations.

* improved precision/recall (Kynkäänniemi et al. 2019, as NVIDIA's and torch-fidelity's code): the real (fake)
  manifold is the union of balls around each real (fake) sample with radius = distance to its k-th nearest
  neighbour in the same set (itself excluded). precision = share of fakes inside the real manifold, recall =
  share of reals inside the fake manifold, membership ``d <= radius``. F1 = 2PR / (P + R) (0 when both are 0).
* density/coverage (Naeem et al. 2020, as the ``prdc`` package): with real radii at k = ``dc_k``,
  density = (1 / (k M)) * sum over fakes of the number of real balls containing it (``d < radius``);
  coverage = share of reals whose ball contains at least one fake.
"""

from __future__ import annotations

import numpy as np
import torch

from histosynth.errors import HistosynthError
from histosynth.evaluation.metrics._linalg import as_tensor, check_pair, row_blocks, sq_dists


def knn_radii_sq(x: torch.Tensor, x_sq: torch.Tensor, ks: list[int], block_elems: int) -> dict[int, torch.Tensor]:
    """Squared distance of each row to its k-th nearest other row, for every k in ``ks``."""
    kmax = max(ks)
    if x.shape[0] < kmax + 1:
        raise HistosynthError(f"k-NN metrics with k={kmax} need more than {kmax} samples per set (got {x.shape[0]})")
    out = {k: torch.empty(x.shape[0], dtype=torch.float64, device=x.device) for k in ks}
    for sl in row_blocks(x.shape[0], x.shape[0], block_elems):
        d = sq_dists(x[sl], x, x_sq[sl], x_sq)
        d[torch.arange(d.shape[0], device=d.device), torch.arange(sl.start, sl.stop, device=d.device)] = 0.0  # self
        vals = torch.topk(d, kmax + 1, dim=1, largest=False).values  # sorted ascending, column 0 is the row itself
        for k in ks:
            out[k][sl] = vals[:, k]
    return out


def manifold_metrics(
    real: np.ndarray,
    fake: np.ndarray,
    *,
    pr_k: int | None = 3,
    dc_k: int | None = 5,
    device: str = "auto",
    block_elems: int = 1 << 24,
) -> dict[str, float | int]:
    """Any of {precision, recall, f1} (pr_k not None) and {density, coverage} (dc_k not None)."""
    check_pair(real, fake)
    x_r, x_f = as_tensor(real, device), as_tensor(fake, device)
    sq_r, sq_f = (x_r * x_r).sum(1), (x_f * x_f).sum(1)
    ks = [k for k in (pr_k, dc_k) if k is not None]
    if not ks:
        return {}
    rad_r = knn_radii_sq(x_r, sq_r, ks, block_elems)
    rad_f = knn_radii_sq(x_f, sq_f, [pr_k], block_elems)[pr_k] if pr_k is not None else None
    n_r, n_f = x_r.shape[0], x_f.shape[0]
    in_real = torch.zeros(n_f, dtype=torch.bool, device=x_r.device)  # precision
    real_covered_by_fake_ball = torch.zeros(n_r, dtype=torch.bool, device=x_r.device)  # recall
    balls_per_fake = torch.zeros(n_f, dtype=torch.float64, device=x_r.device)  # density
    nearest_fake = torch.full((n_r,), float("inf"), dtype=torch.float64, device=x_r.device)  # coverage
    for sl in row_blocks(n_f, n_r, block_elems):
        d = sq_dists(x_f[sl], x_r, sq_f[sl], sq_r)  # (fakes in block, reals)
        if pr_k is not None:
            in_real[sl] = (d <= rad_r[pr_k][None, :]).any(1)
            real_covered_by_fake_ball |= (d <= rad_f[sl][:, None]).any(0)
        if dc_k is not None:
            balls_per_fake[sl] = (d < rad_r[dc_k][None, :]).sum(1, dtype=torch.float64)
            nearest_fake = torch.minimum(nearest_fake, d.min(0).values)
    out: dict[str, float | int] = {}
    if pr_k is not None:
        p = float(in_real.double().mean())
        r = float(real_covered_by_fake_ball.double().mean())
        out.update(precision=p, recall=r, f1=(2 * p * r / (p + r)) if p + r > 0 else 0.0, pr_k=int(pr_k))
    if dc_k is not None:
        out.update(
            density=float(balls_per_fake.mean()) / dc_k,
            coverage=float((nearest_fake < rad_r[dc_k]).double().mean()),
            dc_k=int(dc_k),
        )
    return out
