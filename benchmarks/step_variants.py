#!/usr/bin/env python
"""The default preset's training step with and without the shared frozen front (and flushing denormals), side by side.

``GANStep(share_front=True)`` (what the trainer runs for a Projected GAN D) computes the frozen feature network
and random projection once per fake batch and judges the maps before and after D's update; ``share_front=False``
runs the fakes through the frozen network again for G's update. Each variant is the real trainer's step
(``histosynth.gan.train.build_gan`` on ``configs/dcgan-samples.yaml``: models, optimisers, bf16 autocast where
the CPU has it, DiffAugment) on the real training split, with its own models. Each first trains ``--warmup``
steps (weights away from their initialisation, as in a run), then the variants alternate (A B, B A, ...), so
load from other processes mostly cancels; reported are median seconds per step and the ratio to the unshared
step (< 1: faster). ``torch.set_flush_denormal`` (the CPU treats subnormal floats as zero: they take a slow
micro-code path on x86) is switched per variant, for its warm-up and timed steps.

    python benchmarks/step_variants.py --data data/splits --threads 2 --reps 6 --steps 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from histosynth.config import load_config
from histosynth.device import amp_for
from histosynth.gan.train.runs import open_data
from histosynth.gan.train.trainer import build_gan

VARIANTS = {"unshared front (before)": (False, False), "shared front (default)": (True, False), "shared + flush denormals": (True, True)}


def make_step(cfg, device: torch.device, share: bool):
    torch.manual_seed(cfg.train.seed)
    _, source = open_data(cfg, device)
    amp = amp_for(device, True, cfg.train.cpu_bf16)
    gan = build_gan(cfg, source, device, amp)
    gan.step.share_front = share and gan.step.share_front

    def batches():
        while True:
            for _, x, y in source.batches(source.permutation()):
                yield x, y

    it = batches()
    return (lambda: gan.step([next(it)])), amp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/splits", help="split root with train/ (histosynth data split)")
    ap.add_argument("--config", default="configs/dcgan-samples.yaml")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--warmup", type=int, default=100, help="training steps per variant before timing")
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per variant and repetition")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    cfg = load_config(a.config, [f"data.root={a.data}", f"train.device={a.device}"])
    steps = {}
    for name, (share, ftz) in VARIANTS.items():
        steps[name], amp = make_step(cfg, device, share)
        torch.set_flush_denormal(ftz)
        for _ in range(a.warmup):
            steps[name]()
    times: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps)
    for rep in range(a.reps):
        for name in order if rep % 2 == 0 else order[::-1]:
            torch.set_flush_denormal(VARIANTS[name][1])
            t = time.perf_counter()
            for _ in range(a.steps):
                steps[name]()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - t) / a.steps)
    base = statistics.median(times[order[0]])
    rows = {name: {"s_per_step": statistics.median(ts), "ratio": statistics.median(ts) / base, "per_rep": ts} for name, ts in times.items()}
    print(f"device {device}, threads {torch.get_num_threads()}, amp {amp.name}, batch {cfg.train.batch_size}, {a.warmup} warm-up + {a.reps} reps x {a.steps} steps")
    for name, r in rows.items():
        print(f"  {name:<26} {r['s_per_step']:.3f} s/step  ratio {r['ratio']:.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "threads": torch.get_num_threads(), "amp": amp.name, "results": rows}, f, indent=1)


if __name__ == "__main__":
    main()
