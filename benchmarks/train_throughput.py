#!/usr/bin/env python
"""DCGAN training-step throughput: histosynth's trainer step vs a plain reference loop.

One DCGAN step = D on a real batch + D on a fake batch + one G update, 64 px, batch 64 by default.

* ``histosynth``: what ``histosynth.gan.train`` runs per step (in its default deterministic-kernels mode), in its
  training loop (``histosynth.gan.train.loop.TrainLoop``): a batch gathered from the uint8 patch tensor and
  converted to float [-1, 1] on the device, ``GANStep`` (BCE with label smoothing 0.9, non-saturating G,
  gradient clipping by norm 0.1 with grad-norm metrics, AMP on CUDA per the trainer's policy, D frozen during
  the G backward) and the on-device metric sums.
* ``reference``: the loop of PyTorch's official DCGAN example (examples/dcgan/main.py) with the same model
  classes, initialisation and Adam settings: ``BCEWithLogitsLoss`` (our D returns logits; the example has a
  Sigmoid + BCELoss), real label 1, ``.item()`` on D(x), D(G(z)) every step, fp32, no clipping. It is fed
  ready-made float batches already on the device (the example's DataLoader/transform cost is *not* counted,
  which favours the reference).

The two run side by side in one process, interleaved (A B, B A, A B, ...), each with its own models; the
report gives median img/s over repetitions and the ratio histosynth / reference (> 1: histosynth faster) as
the median of per-repetition ratios (both variants run back to back in a repetition, so load from other
processes mostly cancels) and as the ratio of the medians.

Peak memory: CUDA: ``torch.cuda.max_memory_allocated`` during a repetition minus the memory allocated just
before it (the step's working memory; models/optimizer state excluded). CPU: a fresh subprocess per variant
runs the warm-up and timed steps alone; reported is the peak RSS (``getrusage`` ``ru_maxrss``) minus the RSS
after set-up (models, optimizers and data built).

    python benchmarks/train_throughput.py --device cpu --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from histosynth.config import load_config
from histosynth.data.store import Patch, PatchStore, write_store
from histosynth.device import amp_for, determinism, resolve_device, sync
from histosynth.gan.losses import loss_from_config
from histosynth.gan.train import GANStep, build_models, build_optimizers
from histosynth.data.loader import BatchSource
from histosynth.gan.train.callbacks import MeterUpdate
from histosynth.gan.train.loop import LoopState, TrainLoop

VARIANTS = ("histosynth", "reference")


def make_config(args):
    return load_config(
        None,
        [
            f"data.image_size={args.image_size}",
            f"train.batch_size={args.batch}",
            f"model.g_features={args.features}",
            f"model.d_features={args.features}",
            f"train.amp={'true' if args.amp == 'auto' else 'false'}",
        ],
    )


def make_store(root: Path, n: int, size: int) -> PatchStore:
    rng = np.random.default_rng(0)
    patches = (Patch(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "a") for _ in range(n))
    return PatchStore(write_store(root / "bench-store", patches))


class Histosynth:
    """The trainer's per-step work (see histosynth.gan.train.trainer): its :class:`TrainLoop` over the uint8 store,
    ``GANStep`` (with RL-EO's ``reward`` when given) and the on-device metric sums, under its determinism setting."""

    def __init__(self, cfg, store, device, reward=None):
        torch.manual_seed(0)
        self.device = device
        self.deterministic = cfg.train.deterministic
        self.source = BatchSource(store, batch_size=cfg.train.batch_size, image_size=cfg.data.image_size, device=device, seed=0)
        G, D = build_models(cfg, 0, device)
        opt_g, opt_d = build_optimizers(cfg, G, D)
        self.amp = amp_for(device, cfg.train.amp)
        step_fn = GANStep(G, D, opt_g, opt_d, loss_from_config(cfg.loss), latent_dim=cfg.model.latent_dim, amp=self.amp, grad_clip=cfg.optim.grad_clip, reward=reward)
        endless = LoopState(total_steps=sys.maxsize, epochs=sys.maxsize, steps_per_epoch=len(self.source))
        self.loop = TrainLoop(step_fn, self.source, endless, [MeterUpdate()])

    def run(self, steps: int) -> None:
        with determinism(self.device, self.deterministic):
            self.loop.run(steps)


class Reference:
    """PyTorch examples/dcgan/main.py training loop, on the same model classes and optimizer settings."""

    def __init__(self, cfg, store, device):
        torch.manual_seed(0)
        self.device = device
        self.nz = cfg.model.latent_dim
        self.netG, self.netD = build_models(cfg, 0, device)
        self.optimizerG, self.optimizerD = build_optimizers(cfg, self.netG, self.netD)
        self.criterion = torch.nn.BCEWithLogitsLoss()
        imgs = torch.from_numpy(np.array(store.images)).permute(0, 3, 1, 2).float() / 127.5 - 1
        if imgs.shape[-1] != cfg.data.image_size:
            imgs = torch.nn.functional.interpolate(imgs, size=cfg.data.image_size, mode="bilinear", antialias=True)
        b = cfg.train.batch_size
        self.batches = [imgs[i : i + b].to(device) for i in range(0, len(imgs) - b + 1, b)]
        self.i = 0

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()

    def step(self):
        real_label, fake_label = 1.0, 0.0
        real_cpu = self.batches[self.i % len(self.batches)]
        self.i += 1
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        self.netD.zero_grad()
        batch_size = real_cpu.size(0)
        label = torch.full((batch_size,), real_label, dtype=real_cpu.dtype, device=self.device)
        output = self.netD(real_cpu)
        errD_real = self.criterion(output, label)
        errD_real.backward()
        D_x = torch.sigmoid(output).mean().item()  # noqa: F841
        noise = torch.randn(batch_size, self.nz, device=self.device)
        fake = self.netG(noise)
        label.fill_(fake_label)
        output = self.netD(fake.detach())
        errD_fake = self.criterion(output, label)
        errD_fake.backward()
        D_G_z1 = torch.sigmoid(output).mean().item()  # noqa: F841
        errD = errD_real + errD_fake  # noqa: F841
        self.optimizerD.step()
        # (2) Update G network: maximize log(D(G(z)))
        self.netG.zero_grad()
        label.fill_(real_label)
        output = self.netD(fake)
        errG = self.criterion(output, label)
        errG.backward()
        D_G_z2 = torch.sigmoid(output).mean().item()  # noqa: F841
        self.optimizerG.step()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_probe(args) -> None:
    """Child process: one variant alone; prints {"peak_delta_mb": ...} (CPU RSS)."""
    device = torch.device("cpu")
    cfg = make_config(args)
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp), args.patches, args.image_size)
        runner = (Histosynth if args.probe == "histosynth" else Reference)(cfg, store, device)
        base = rss_bytes()
        runner.run(args.warmup + args.steps)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"peak_delta_mb": (peak - base) / 2**20, "rss_after_setup_mb": base / 2**20}))


def cpu_memory(args, variant: str) -> dict:
    cmd = [sys.executable, __file__, "--probe", variant, "--device", "cpu", "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch), "--image-size", str(args.image_size), "--features", str(args.features), "--patches", str(args.patches)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per repetition (default: 2 on CPU, 50 on CUDA)")
    ap.add_argument("--reps", type=int, default=None, help="interleaved repetitions per variant (default: 15 on CPU, 5 on CUDA)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--features", type=int, default=64, help="g_features = d_features")
    ap.add_argument("--patches", type=int, default=512, help="synthetic uint8 patches in the store")
    ap.add_argument("--amp", choices=("auto", "off"), default="auto", help="histosynth AMP policy on CUDA (bf16/fp16); the reference is always fp32")
    ap.add_argument("--json", dest="json_out", default=None, help="write the results here")
    ap.add_argument("--probe", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    # CPU: many short interleaved repetitions, so the median shrugs off load from other processes
    args.steps = args.steps or (50 if cuda else 2)
    args.reps = args.reps or (5 if cuda else 15)
    if args.probe:
        memory_probe(args)
        return

    cfg = make_config(args)
    tmp = tempfile.TemporaryDirectory()
    store = make_store(Path(tmp.name), args.patches, args.image_size)
    runners = {"histosynth": Histosynth(cfg, store, device), "reference": Reference(cfg, store, device)}
    for r in runners.values():
        r.run(args.warmup)
    sync(device)
    load_before = os.getloadavg()[0]

    ips: dict[str, list[float]] = {v: [] for v in VARIANTS}
    mem: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for rep in range(args.reps):
        order = VARIANTS if rep % 2 == 0 else VARIANTS[::-1]
        for v in order:
            if cuda:
                sync(device)
                before = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            runners[v].run(args.steps)
            sync(device)
            dt = time.perf_counter() - t0
            ips[v].append(args.steps * args.batch / dt)
            if cuda:
                mem[v].append((torch.cuda.max_memory_allocated(device) - before) / 2**20)
            print(f"rep {rep + 1}/{args.reps} {v:<10} {ips[v][-1]:8.1f} img/s", file=sys.stderr, flush=True)
    load_after = os.getloadavg()[0]
    tmp.cleanup()

    if cuda:
        peak = {v: max(mem[v]) for v in VARIANTS}
        mem_method = "torch.cuda.max_memory_allocated during a repetition minus memory_allocated before it"
    else:
        del runners
        probes = {v: cpu_memory(args, v) for v in VARIANTS}
        peak = {v: probes[v]["peak_delta_mb"] for v in VARIANTS}
        mem_method = "CPU: peak RSS (getrusage ru_maxrss) minus RSS after set-up, fresh process per variant"

    amp = amp_for(device, args.amp == "auto")
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else (platform.processor() or platform.machine()),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "batch": args.batch,
        "image_size": args.image_size,
        "features": args.features,
        "steps_per_rep": args.steps,
        "reps": args.reps,
        "warmup": args.warmup,
        "amp_histosynth": amp.name,
        "amp_reference": "off",
        "memory_method": mem_method,
        "loadavg_1min_before_after": [round(load_before, 2), round(load_after, 2)],
        "variants": {
            v: {"img_per_s_median": statistics.median(ips[v]), "img_per_s_min": min(ips[v]), "img_per_s_max": max(ips[v]), "img_per_s": ips[v], "peak_mem_mb": peak[v]}
            for v in VARIANTS
        },
    }
    # each repetition runs both variants back to back: the per-repetition ratio cancels slow load drift
    paired = [h / r for h, r in zip(ips["histosynth"], ips["reference"])]
    result["ratio_paired_per_rep"] = paired
    result["ratio_img_per_s"] = statistics.median(paired)
    result["ratio_of_medians"] = result["variants"]["histosynth"]["img_per_s_median"] / result["variants"]["reference"]["img_per_s_median"]

    print(f"\nDCGAN train step, {args.image_size} px, batch {args.batch}, features {args.features}, {device} ({result['device_name']}, {result['cpu_threads']} threads), torch {torch.__version__}")
    print(f"{args.reps} interleaved reps x {args.steps} steps after {args.warmup} warm-up steps; 1-min load average before/after: {result['loadavg_1min_before_after']}")
    print(f"memory: {mem_method}\n")
    print("| variant | AMP | img/s (median) | img/s (min-max) | ms/step | peak memory (MiB) |")
    print("|---|---|---:|---:|---:|---:|")
    for v in VARIANTS:
        r = result["variants"][v]
        a = amp.name if v == "histosynth" else "off"
        print(f"| {v} | {a} | {r['img_per_s_median']:.1f} | {r['img_per_s_min']:.1f}-{r['img_per_s_max']:.1f} | {1000 * args.batch / r['img_per_s_median']:.0f} | {r['peak_mem_mb']:.0f} |")
    q = statistics.quantiles(paired, n=4) if len(paired) >= 2 else [paired[0]] * 3
    print(f"\nratio histosynth / reference (img/s), median of per-repetition pairs: {result['ratio_img_per_s']:.3f} (quartiles {q[0]:.3f}-{q[2]:.3f}); ratio of medians: {result['ratio_of_medians']:.3f}")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
