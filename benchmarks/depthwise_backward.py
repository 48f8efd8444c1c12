#!/usr/bin/env python
"""The demo model's training step with and without the strided-depthwise workaround in the frozen EfficientNet.

G's update backpropagates through the Projected GAN discriminator's frozen EfficientNet-Lite0. On CPU in bf16,
oneDNN's backward of its four stride-2 depthwise convolutions is 10-20x slower than a stride-1 depthwise
convolution over the same input, so ``SameConv2d`` runs those layers as stride 1 + subsampling when an input
gradient is needed (``histosynth.gan.nets.efficientnet_lite``). This measures what that buys:

* per layer: forward + input-gradient backward of each strided depthwise layer at the shapes a 64 px patch gives;
* per step: the default preset's models, built from ``configs/dcgan-samples.yaml`` as the trainer builds them
  (conditional DCGAN G with conditional batch norm, projected D at 64 px), its DiffAugment policy, hinge loss and
  Adam settings, batch 16, channels-last, bf16 autocast; one step = D on a real and a fake batch + one G update.

Both variants run in one process on the same models, interleaved (A B, B A, ...), so load from other processes
mostly cancels; reported are the medians and the median of the per-repetition ratios (< 1: the workaround is faster).

    python benchmarks/depthwise_backward.py --threads 2 --reps 6 --steps 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from histosynth.config import load_config
from histosynth.gan.diffaugment import DiffAugment
from histosynth.gan.nets import build_discriminator, build_generator
from histosynth.gan.nets.efficientnet_lite import SameConv2d
from histosynth.gan.train.trainer import discriminator_spec, generator_spec

PRESET = "configs/dcgan-samples.yaml"

LAYERS = ((96, 3, 32), (144, 5, 16), (240, 3, 8), (672, 5, 4))  # (channels, kernel, input side) at 64 px
VARIANTS = ("native strided", "stride 1 + subsample")


def layer_step(channels: int, kernel: int, side: int, batch: int):
    conv = SameConv2d(channels, channels, kernel, 2, groups=channels, bias=False).requires_grad_(False)
    x = torch.randn(batch, channels, side, side).contiguous(memory_format=torch.channels_last).requires_grad_(True)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        torch.autograd.grad(y.float().sum(), x)

    return step


def train_step(batch: int):
    cfg, classes = load_config(PRESET), 4
    g_spec = generator_spec(cfg, classes)
    G, D = build_generator(g_spec), build_discriminator(discriminator_spec(cfg, classes))
    D.load_pretrained()
    G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    d_params = [p for p in D.parameters() if p.requires_grad]
    o = cfg.optim
    opt_g = torch.optim.Adam(G.parameters(), o.lr_g, betas=(o.beta1, o.beta2))
    opt_d = torch.optim.Adam(d_params, o.lr_d, betas=(o.beta1, o.beta2))
    aug = DiffAugment(cfg.augment.policy, p=cfg.augment.p)
    side = g_spec["image_size"]
    x = (torch.rand(batch, 3, side, side) * 2 - 1).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fake = G(torch.randn(batch, g_spec["latent_dim"]), y)
            loss_d = F.relu(1 - D(aug(x), y)).mean() + F.relu(1 + D(aug(fake.detach()), y)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.float().backward()
        opt_d.step()
        for p in d_params:
            p.requires_grad_(False)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss_g = -D(aug(fake), y).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.float().backward()
        opt_g.step()
        for p in d_params:
            p.requires_grad_(True)

    return step


def timed(step, n: int, workaround: bool) -> float:
    SameConv2d.stride1_backward = workaround
    t = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t) / n


def compare(step, reps: int, n: int, warmup: int) -> dict:
    for w in (False, True):
        timed(step, warmup, w)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(reps):
        order = (False, True) if r % 2 == 0 else (True, False)
        for w in order:
            times[VARIANTS[w]].append(timed(step, n, w))
    ratios = [b / a for a, b in zip(times[VARIANTS[0]], times[VARIANTS[1]])]
    return {**{v: statistics.median(t) for v, t in times.items()}, "ratio": statistics.median(ratios)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--steps", type=int, default=4, help="training steps per repetition (layers: 10x this)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for c, k, side in LAYERS:
        res = compare(layer_step(c, k, side, args.batch), args.reps, 10 * args.steps, 3)
        rows.append({"what": f"depthwise {k}x{k} stride 2, {c} ch, {side}x{side} in", **res})
    rows.append({"what": f"training step (dcgan-samples.yaml models, batch {args.batch})", **compare(train_step(args.batch), args.reps, args.steps, 2)})
    print(f"| what | {VARIANTS[0]} ms | {VARIANTS[1]} ms | ratio |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['what']} | {1000 * r[VARIANTS[0]]:.2f} | {1000 * r[VARIANTS[1]]:.2f} | {r['ratio']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "batch": args.batch, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
