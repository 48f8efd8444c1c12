#!/usr/bin/env python
"""Channels-last vs contiguous (NCHW) memory format for the demo model's training step, side by side.

The trainer builds G and D in channels-last format (``histosynth.gan.train.trainer.build_models``). This measures
what that buys on the default preset's models (``configs/dcgan-samples.yaml``: conditional DCGAN G of width 64,
Projected GAN D at ``projected_size``, DiffAugment colour + translation, hinge loss, batch 16) with and without
bf16 autocast. One step = D on a real and a fake batch + one G update. The variants run interleaved in one
process (A B C D, D C B A, ...), each with its own models, so load from other processes mostly cancels; the
report gives each variant's median seconds per step and the ratio to NCHW fp32 (< 1: faster).

    python benchmarks/memory_format.py --threads 2 --reps 5 --steps 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from histosynth.gan.diffaugment import DiffAugment
from histosynth.gan.nets import build_discriminator, build_generator

VARIANTS = {"nchw fp32": (False, False), "nchw bf16": (False, True), "channels_last fp32": (True, False), "channels_last bf16": (True, True)}


def make_step(channels_last: bool, bf16: bool, projected_size: int, batch: int, device: torch.device):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    G = build_generator({"arch": "dcgan", "image_size": 64, "latent_dim": 100, "g_features": 64, "upsample": "resize", "num_classes": 4})
    D = build_discriminator({"arch": "dcgan", "image_size": 64, "d_features": 32, "discriminator": "projected", "projected_size": projected_size, "num_classes": 4})
    D.load_pretrained()
    G, D = G.to(device, memory_format=fmt), D.to(device, memory_format=fmt)
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([p for p in D.parameters() if p.requires_grad], 2e-4, betas=(0.5, 0.999))
    aug = DiffAugment("color,translation")
    x = (torch.rand(batch, 3, 64, 64, device=device) * 2 - 1).contiguous(memory_format=fmt)
    y = torch.randint(0, 4, (batch,), device=device)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step() -> None:
        with autocast():
            fake = G(torch.randn(batch, 100, device=device), y)
            loss_d = torch.relu(1 - D(aug(x), y)).mean() + torch.relu(1 + D(aug(fake.detach()), y)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.float().backward()
        opt_d.step()
        with autocast():
            loss_g = -D(aug(G(torch.randn(batch, 100, device=device), y)), y).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.float().backward()
        opt_g.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per variant and repetition")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--projected-size", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    steps = {name: make_step(cl, bf16, a.projected_size, a.batch, device) for name, (cl, bf16) in VARIANTS.items()}
    for fn in steps.values():  # warm-up: oneDNN/cuDNN pick their kernels on the first calls
        fn(), fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps)
    for rep in range(a.reps):
        for name in order if rep % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            for _ in range(a.steps):
                steps[name]()
            times[name].append((time.perf_counter() - t) / a.steps)
    base = statistics.median(times["nchw fp32"])
    rows = {name: {"s_per_step": statistics.median(ts), "ratio_to_nchw_fp32": statistics.median(ts) / base} for name, ts in times.items()}
    print(f"device {device}, threads {torch.get_num_threads()}, batch {a.batch}, projected_size {a.projected_size}, {a.reps} reps x {a.steps} steps")
    for name, r in rows.items():
        print(f"  {name:<20} {r['s_per_step']:.3f} s/step  ratio {r['ratio_to_nchw_fp32']:.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "threads": torch.get_num_threads(), "results": rows}, f, indent=1)


if __name__ == "__main__":
    main()
