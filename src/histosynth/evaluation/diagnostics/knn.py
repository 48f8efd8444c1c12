"""K-nearest real neighbours of synthetic samples: the papers' memorization / duplicate check.

Distances are Euclidean in the evaluation's feature space (the extractor named in the record). Each grid row is
one synthetic image followed by its K nearest real patches, each labelled with its distance; by default the rows
are the synthetic samples *closest* to any real patch (the likeliest copies). The summary puts the synthetic
top-1 distances beside the real set's own nearest-neighbour distances (each real patch vs the other real ones):
a synthetic sample much closer to a real patch than real patches are to each other is a copy candidate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from histosynth.evaluation.metrics._linalg import as_tensor, row_blocks, sq_dists

PAD, GAP, LABEL = 4, 10, 14  # px: between cells, between the query column and the neighbours, text strip


def nearest(query: np.ndarray, ref: np.ndarray, k: int, *, exclude_self: bool = False, device: str = "auto", block_elems: int = 1 << 24) -> tuple[np.ndarray, np.ndarray]:
    """-> (indices (q, k), Euclidean distances (q, k)) of the k nearest ``ref`` rows per query (float64; candidates
    by the fast expansion, distances of the found ones recomputed exactly, so an exact copy is at distance 0)."""
    q, r = as_tensor(query, device), as_tensor(ref, device)
    k = min(int(k), r.shape[0] - (1 if exclude_self else 0))
    q_sq, r_sq = (q * q).sum(1), (r * r).sum(1)
    idx = np.empty((q.shape[0], k), np.int64)
    dist = np.empty((q.shape[0], k), np.float64)
    for sl in row_blocks(q.shape[0], r.shape[0], block_elems):
        d = sq_dists(q[sl], r, q_sq[sl], r_sq)
        if exclude_self:
            d[torch.arange(d.shape[0]), torch.arange(sl.start, sl.stop)] = float("inf")
        ids = torch.topk(d, k, dim=1, largest=False).indices
        # exact distances of the k found (the |a|^2 + |b|^2 - 2ab expansion leaves ~1e-7 for identical rows)
        exact = (q[sl][:, None, :] - r[ids]).norm(dim=2)
        exact, order = exact.sort(dim=1, stable=True)
        idx[sl], dist[sl] = ids.gather(1, order).cpu().numpy(), exact.cpu().numpy()
    return idx, dist


def grid_size(rows: int, k: int, cell: int) -> tuple[int, int]:
    """(width, height) of the grid image for ``rows`` queries and ``k`` neighbours at ``cell`` px."""
    return PAD + (k + 1) * (cell + PAD) + GAP, PAD + rows * (cell + LABEL + PAD)


def cell_image(img: np.ndarray, cell: int) -> np.ndarray:
    """``img`` (uint8 HWC or HW) as an RGB ``cell`` x ``cell`` tile (nearest neighbour: no smoothing of texture)."""
    from PIL import Image

    arr = np.asarray(img, np.uint8)
    arr = arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr
    return np.asarray(Image.fromarray(arr).convert("RGB").resize((cell, cell), Image.NEAREST))


def draw_grid(queries: np.ndarray, real: np.ndarray, idx: np.ndarray, dist: np.ndarray, path: str | Path, *, cell: int = 64, query_names: list[str] | None = None) -> Path:
    """PNG: row i = queries[i] (uint8 HWC) then real[idx[i, j]] labelled with dist[i, j]."""
    from PIL import Image, ImageDraw

    rows, k = idx.shape
    w, h = grid_size(rows, k, cell)
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i in range(rows):
        y = PAD + i * (cell + LABEL + PAD)
        canvas.paste(Image.fromarray(cell_image(queries[i], cell)), (PAD, y))
        draw.text((PAD, y + cell + 1), (query_names[i] if query_names else f"synth {i}")[: cell // 6], fill=(200, 0, 0))
        for j in range(k):
            x = PAD + (j + 1) * (cell + PAD) + GAP
            canvas.paste(Image.fromarray(cell_image(real[idx[i, j]], cell)), (x, y))
            draw.text((x, y + cell + 1), f"d={dist[i, j]:.3g}", fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def memorization_check(
    fake_feats: np.ndarray,
    fake_images: np.ndarray,
    real_feats: np.ndarray,
    real_images: np.ndarray,
    path: str | Path,
    *,
    k: int = 5,
    rows: int = 8,
    order: str = "closest",
    cell: int = 64,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """Write the grid PNG; -> summary {path, k, rows, top-1 distance stats, real-real NN reference, shown rows}."""
    idx, dist = nearest(fake_feats, real_feats, k, device=device)
    top1 = dist[:, 0]
    if order == "closest":
        shown = np.argsort(top1, kind="stable")[:rows]
    elif order == "random":
        shown = np.sort(np.random.RandomState(seed).choice(len(top1), min(rows, len(top1)), replace=False))
    else:
        raise ValueError(f"order must be closest or random, got {order!r}")
    draw_grid(np.asarray(fake_images)[shown], np.asarray(real_images), idx[shown], dist[shown], path, cell=cell, query_names=[f"synth {i}" for i in shown])
    summary: dict[str, Any] = {
        "path": str(path),
        "k": int(idx.shape[1]),
        "rows": int(len(shown)),
        "order": order,
        "shown": [{"synthetic": int(i), "real": idx[i].tolist(), "distance": dist[i].tolist()} for i in shown],
        "top1_min": float(top1.min()),
        "top1_median": float(np.median(top1)),
    }
    if len(real_feats) > 1:
        _, rr = nearest(real_feats, real_feats, 1, exclude_self=True, device=device)
        ref = rr[:, 0]
        p5 = float(np.percentile(ref, 5))
        summary.update(real_nn_median=float(np.median(ref)), real_nn_p5=p5, share_closer_than_real_p5=float((top1 < p5).mean()))
    return summary
