#!/usr/bin/env python
"""RL-EO step-time overhead: the trainer's GAN step with the RL-EO reward vs the same step without it.

Both variants are ``histosynth.gan.train.GANStep`` on the improved-DCGAN settings (BCE with label smoothing 0.9,
non-saturating G, clipping 0.1, AMP policy of the trainer, deterministic kernels as the trainer's default),
each with its own models, run by the trainer's loop on batches from its ``BatchSource`` (train_throughput.py's
``Histosynth`` runner). ``rl-eo`` adds
``histosynth.gan.rl_eo.RLEOReward``: the frozen similarity network on (real_i, fake_i) for every pair, under
no_grad, on the training device, half precision on CUDA (``--no-half`` for fp32).

The similarity network: ``--snn PATH`` loads the trained MFT-SNN (as the trainer does: ``histosynth.gan.train.similarity``); without
it a *stand-in* with the MFT-SNN encoder's architecture is used (torchvision VGG-16 conv layers, random seeded
weights, cosine of the flattened features) -- its cost is the encoder's cost, its scores mean nothing.

The variants run interleaved in one process (A B, B A, ...); reported are median ms/step per variant, the
overhead ``rl-eo / dcgan - 1`` as the median of per-repetition ratios (both variants back to back, so load
from other processes mostly cancels), and the similarity forward alone (ms per batch of pairs). Target: <= 10%
on a GPU at the paper's shape (64 px, batch 128, 64 feature maps).

    python benchmarks/rl_eo_step_overhead.py --device cpu --batch 32 --json bench/rl_eo_overhead_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import Histosynth as Runner  # noqa: E402  (the trainer's loop and step, + the reward)

from histosynth.config import load_config  # noqa: E402
from histosynth.data.store import Patch, PatchStore, write_store  # noqa: E402
from histosynth.device import amp_for, determinism, resolve_device, sync  # noqa: E402
from histosynth.gan.rl_eo import RLEOReward, vgg16_standin  # noqa: E402
from histosynth.gan.train.similarity import load_similarity  # noqa: E402

VARIANTS = ("dcgan", "rl-eo")


def make_store(root: Path, n: int, size: int) -> PatchStore:
    rng = np.random.default_rng(0)
    patches = (Patch(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), ("a", "b")[i % 2]) for i in range(n))
    return PatchStore(write_store(root / "bench-store", patches, classes=["a", "b"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--snn", default=None, help="trained MFT-SNN (snn.pt); default: the VGG-16-shaped stand-in")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per repetition (default: 2 on CPU, 50 on CUDA)")
    ap.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default: 9 on CPU, 7 on CUDA)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--features", type=int, default=64, help="g_features = d_features")
    ap.add_argument("--patches", type=int, default=512)
    ap.add_argument("--half", action=argparse.BooleanOptionalAction, default=True, help="SNN in half precision on CUDA (rl_eo.half)")
    ap.add_argument("--overlap", action=argparse.BooleanOptionalAction, default=True, help="SNN on a side CUDA stream beside D's forward passes (what the trainer does)")
    ap.add_argument("--graph", action=argparse.BooleanOptionalAction, default=True, help="replay the reward as a CUDA graph (what the trainer does)")
    ap.add_argument("--amp", choices=("auto", "off"), default="auto", help="the GAN's AMP policy on CUDA")
    ap.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True, help="deterministic kernels (the trainer's default)")
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    args.steps = args.steps or (50 if cuda else 2)
    args.reps = args.reps or (7 if cuda else 9)
    cfg = load_config(
        None,
        [f"data.image_size={args.image_size}", f"train.batch_size={args.batch}", f"model.g_features={args.features}", f"model.d_features={args.features}",
         f"train.amp={'true' if args.amp == 'auto' else 'false'}", f"train.deterministic={'true' if args.deterministic else 'false'}", f"rl_eo.half={'true' if args.half else 'false'}"],
    )
    if args.snn:
        similarity, sim_label = load_similarity(args.snn, device), f"MFT-SNN {args.snn}"
    else:
        similarity, sim_label = vgg16_standin(device), "stand-in: VGG-16 conv layers (random weights) + cosine; cost only"

    tmp = tempfile.TemporaryDirectory()
    store = make_store(Path(tmp.name), args.patches, args.image_size)
    reward = RLEOReward(similarity, cfg.rl_eo.weight, classes=["a", "b"], device=device, half=cfg.rl_eo.half, overlap=args.overlap, graph=args.graph)
    runners = {"dcgan": Runner(cfg, store, device), "rl-eo": Runner(cfg, store, device, reward)}
    for r in runners.values():
        r.run(args.warmup)
    sync(device)
    load_before = os.getloadavg()[0]

    ms: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for rep in range(args.reps):
        for v in VARIANTS if rep % 2 == 0 else VARIANTS[::-1]:
            sync(device)
            t0 = time.perf_counter()
            runners[v].run(args.steps)
            sync(device)
            ms[v].append(1000 * (time.perf_counter() - t0) / args.steps)
            print(f"rep {rep + 1}/{args.reps} {v:<6} {ms[v][-1]:8.2f} ms/step", file=sys.stderr, flush=True)

    # the similarity forward alone, on a batch of real/fake pairs from the rl-eo runner
    x, _ = runners["rl-eo"].source.batch(torch.arange(args.batch))
    fake = torch.rand_like(x) * 2 - 1
    snn_ms = []
    with determinism(device, args.deterministic):
        reward(x, fake)
        for _ in range(max(3, args.reps)):
            sync(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                reward(x, fake)
            sync(device)
            snn_ms.append(1000 * (time.perf_counter() - t0) / args.steps)
    load_after = os.getloadavg()[0]
    tmp.cleanup()

    paired = [r / d - 1.0 for r, d in zip(ms["rl-eo"], ms["dcgan"])]
    amp = amp_for(device, args.amp == "auto")
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else (platform.processor() or platform.machine()),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "similarity": sim_label,
        "snn_precision": "fp16 autocast" if reward.half else "fp32",
        "snn_side_stream": reward.stream is not None,
        "snn_cuda_graph": bool(reward._graphs),
        "gan_amp": amp.name,
        "deterministic": args.deterministic,
        "batch": args.batch,
        "image_size": args.image_size,
        "features": args.features,
        "steps_per_rep": args.steps,
        "reps": args.reps,
        "loadavg_1min_before_after": [round(load_before, 2), round(load_after, 2)],
        "ms_per_step": {v: {"median": statistics.median(ms[v]), "all": ms[v]} for v in VARIANTS},
        "similarity_ms_per_batch_median": statistics.median(snn_ms),
        "overhead_paired_per_rep": paired,
        "overhead": statistics.median(paired),
        "overhead_of_medians": statistics.median(ms["rl-eo"]) / statistics.median(ms["dcgan"]) - 1.0,
        "target_overhead_gpu": 0.10,
    }
    print(f"\nRL-EO step overhead, {args.image_size} px, batch {args.batch}, features {args.features}, {device} ({result['device_name']}, {result['cpu_threads']} threads), torch {torch.__version__}")
    print(f"similarity: {sim_label} ({result['snn_precision']}, side stream {result['snn_side_stream']}, CUDA graph {result['snn_cuda_graph']}); GAN AMP {amp.name}; deterministic kernels {args.deterministic}")
    print(f"{args.reps} interleaved reps x {args.steps} steps after {args.warmup} warm-up steps; 1-min load average before/after: {result['loadavg_1min_before_after']}\n")
    print("| variant | ms/step (median) | ms/step (min-max) |")
    print("|---|---:|---:|")
    for v in VARIANTS:
        print(f"| {v} | {statistics.median(ms[v]):.2f} | {min(ms[v]):.2f}-{max(ms[v]):.2f} |")
    print(f"\nsimilarity forward alone: {result['similarity_ms_per_batch_median']:.2f} ms per {args.batch} pairs")
    print(f"overhead rl-eo / dcgan - 1, median of per-repetition pairs: {100 * result['overhead']:.1f}% (of medians: {100 * result['overhead_of_medians']:.1f}%); GPU target <= 10%")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
