#!/usr/bin/env python
"""The memorization gate's feature network in float32 vs bf16 autocast on CPU, side by side.

A first ``histosynth promote`` embeds every training patch with the FID Inception (940 patches: ~110 s of the demo on
2 cores). The gate only compares nearest-neighbour distances relative to the train-to-train median, so it runs the
same network under bf16 autocast (``inception-fid-bf16``). This measures both on the same batches, alternating
(A B, B A, ...) after one warm-up batch each so load from other processes mostly cancels, then computes the gate's
number both ways: each ``--probe`` patch's nearest-neighbour distance to the training patches over the train-train
scale (``registry.promote.nn_distances`` / ``train_nn_scale``). Reported: median seconds per batch, the ratio to
float32 (< 1: faster), and how far the gate's relative distances move.

    python benchmarks/inception_precision.py --data data/splits --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from histosynth.data.store import PatchStore
from histosynth.evaluation.features import get_extractor
from histosynth.registry.promote import nn_distances, train_nn_scale

NAMES = ("inception-fid", "inception-fid-bf16")


def embed(ext_by_name: dict, images: np.ndarray, batch: int, times: dict[str, list[float]]) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {k: [] for k in ext_by_name}
    for i, start in enumerate(range(0, len(images), batch)):
        x = images[start : start + batch]
        for name in NAMES if i % 2 == 0 else NAMES[::-1]:
            t0 = time.perf_counter()
            out[name].append(ext_by_name[name](x))
            if i and len(x) == batch:  # the first batch of each is warm-up; a short last batch is not timed
                times[name].append(time.perf_counter() - t0)
    return {k: np.concatenate(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/splits")
    ap.add_argument("--probe", default="val", help="split whose patches stand in for generated samples")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    exts = {k: get_extractor(k, "cpu") for k in NAMES}
    times: dict[str, list[float]] = {k: [] for k in NAMES}
    train = embed(exts, np.array(PatchStore(f"{args.data}/train").images), args.batch, times)
    probe = embed(exts, np.array(PatchStore(f"{args.data}/{args.probe}").images), args.batch, times)
    rel = {k: nn_distances(probe[k], train[k]) / train_nn_scale(train[k]) for k in NAMES}
    base = statistics.median(times[NAMES[0]])
    rows = [{"extractor": k, "autocast": exts[k].info.get("autocast", "off"), "s_per_batch": statistics.median(v), "ratio": statistics.median(v) / base, "batches": len(v)} for k, v in times.items()]
    moved = np.abs(rel[NAMES[1]] - rel[NAMES[0]])
    same_nn = float(np.mean(np.argmin(_d(probe[NAMES[0]], train[NAMES[0]]), 1) == np.argmin(_d(probe[NAMES[1]], train[NAMES[1]]), 1)))
    print(f"{len(train[NAMES[0]])} train + {len(probe[NAMES[0]])} {args.probe} patches, {args.batch} per batch, {args.threads} threads, torch {torch.__version__}")
    print("| extractor | autocast | s / batch | ratio |\n|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['extractor']} | {r['autocast']} | {r['s_per_batch']:.2f} | {r['ratio']:.2f} |")
    print(f"gate distance (relative NN distance of each {args.probe} patch): float32 min {rel[NAMES[0]].min():.4f} median {np.median(rel[NAMES[0]]):.4f}; "
          f"bf16 min {rel[NAMES[1]].min():.4f} median {np.median(rel[NAMES[1]]):.4f}; largest move {moved.max():.4f}; same nearest patch {same_nn:.1%}")
    print(json.dumps({"rows": rows, "max_rel_distance_move": float(moved.max()), "same_nearest": same_nn}))


def _d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distances without the (n, m, dim) intermediate."""
    return (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T


if __name__ == "__main__":
    main()
