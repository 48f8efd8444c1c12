#!/usr/bin/env python
"""The FID Inception on CPU with its 299x299 input in NCHW vs channels-last memory, side by side.

Every evaluation and the promotion's memorization gate run the FID Inception on CPU here (940 training patches took
124 s of the demo). The TorchScript network is the same either way; only the input tensor's memory layout changes,
which lets oneDNN pick its NHWC convolution kernels. The batches are real patches of ``--split`` (64 per batch, as
``Extractor.extract``); the layouts alternate (A B, B A, ...) after one warm-up batch each, so load from other
processes mostly cancels. Reported: median seconds per batch, the ratio to NCHW (< 1: faster), and the largest
feature difference between the layouts (float32 rounding of a different summation order).

    python benchmarks/inception_layout.py --data data/splits --threads 2 --reps 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from histosynth.data.store import PatchStore
from histosynth.evaluation.features.inception import _scale, load_torchscript
from histosynth.files.pretrained import inception_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/splits")
    ap.add_argument("--split", default="train")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=6, help="timed batches per layout")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    store = PatchStore(f"{args.data}/{args.split}")
    n = len(store)
    net = load_torchscript(inception_weights(), torch.device("cpu"))
    layouts = {"NCHW (before)": torch.contiguous_format, "channels-last (default)": torch.channels_last}
    times: dict[str, list[float]] = {k: [] for k in layouts}
    diffs = []
    with torch.inference_mode():
        for rep in range(args.reps + 1):
            start = (rep * args.batch) % max(1, n - args.batch)
            x = torch.from_numpy(np.array(store.images[start : start + args.batch])).permute(0, 3, 1, 2).float()
            order = list(layouts.items()) if rep % 2 == 0 else list(layouts.items())[::-1]
            out = {}
            for name, fmt in order:
                t0 = time.perf_counter()
                out[name] = net(_scale(x).contiguous(memory_format=fmt))
                if rep:  # the first batch of each layout is warm-up
                    times[name].append(time.perf_counter() - t0)
            diffs.append(float((out["NCHW (before)"] - out["channels-last (default)"]).abs().max()))
    base = statistics.median(times["NCHW (before)"])
    rows = [{"layout": k, "s_per_batch": statistics.median(v), "ratio": statistics.median(v) / base} for k, v in times.items()]
    print(f"FID Inception, {args.batch} real {args.split} patches per batch, {args.reps} batches per layout, {args.threads} threads, torch {torch.__version__}")
    print("| input layout | s / batch | ratio |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['layout']} | {r['s_per_batch']:.2f} | {r['ratio']:.2f} |")
    print(f"largest feature difference between the layouts: {max(diffs):.1e}")
    print(json.dumps({"rows": rows, "max_abs_diff": max(diffs)}))


if __name__ == "__main__":
    main()
