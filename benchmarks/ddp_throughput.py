#!/usr/bin/env python
"""Data-parallel training throughput on CPU: img/s of the GAN trainer's step with 1 vs N gloo processes.

Each configuration is a ``torchrun --standalone --nproc_per_node N`` job running this file as its worker: the demo
preset (``configs/dcgan-samples.yaml``, 64 px, its global batch) on the real training split, built as the trainer
builds it (each rank its part of every global batch, gradients averaged with one all-reduce per net per step,
metrics averaged: :mod:`histosynth.distributed`), ``--warmup`` steps, then ``--steps`` timed steps between two
barriers. Reported: global images per second (steps x global batch / seconds) on rank 0, and the ratio N vs 1.
Jobs alternate (1, N, N, 1, ...) so a change in the machine's load falls on both.

Every process uses ``--threads`` torch threads (1 by default): 2 processes then use 2 cores where 1 process uses 1.
``--layouts 1x2 2x1`` instead compares processes x threads at the same core count (one process with 2 threads vs
two processes with one each): the question a 2-core laptop asks.

    python benchmarks/ddp_throughput.py --procs 1 2 --reps 2 --json ddp.json
    python benchmarks/ddp_throughput.py --layouts 1x2 2x1 --reps 3 --json ddp-layouts.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    from histosynth import distributed
    from histosynth.config import load_config
    from histosynth.device import amp_for, determinism
    from histosynth.gan.train.callbacks import MeterUpdate
    from histosynth.gan.train.loop import LoopState, TrainLoop
    from histosynth.gan.train.runs import open_data
    from histosynth.gan.train.trainer import build_gan

    torch.set_num_threads(args.threads)
    cfg = load_config(ROOT / "configs" / "dcgan-samples.yaml", [f"data.image_size={args.image_size}", "train.device=cpu"])
    world, device = distributed.init(cfg.train.device)
    amp = amp_for(device, cfg.train.amp, cfg.train.cpu_bf16)
    torch.manual_seed(cfg.train.seed)
    _, source = open_data(cfg, device, world)
    gan = build_gan(cfg, source, device, amp, world=world)
    world.prepare(gan.G, gan.D)
    state = LoopState(total_steps=sys.maxsize, epochs=sys.maxsize, steps_per_epoch=gan.steps_per_epoch)
    loop = TrainLoop(lambda batches: world.mean(gan.step(batches)), source, state, [MeterUpdate()], group=cfg.optim.d_steps)
    with determinism(device, cfg.train.deterministic):
        loop.run(args.warmup)
        world.barrier()
        t0 = time.perf_counter()
        loop.run(args.steps)
        world.barrier()
        seconds = time.perf_counter() - t0
    if world.is_main:
        images = args.steps * cfg.train.batch_size * cfg.optim.d_steps
        result = {"processes": world.size, "threads_per_process": args.threads, "steps": args.steps, "global_batch": cfg.train.batch_size, "amp": amp.name, "seconds": seconds, "img_per_s": images / seconds}
        Path(args.out).write_text(json.dumps(result))


def launch(n: int, threads: int, args: argparse.Namespace, out: Path) -> dict:
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", str(n), __file__, "--worker", "--out", str(out)]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(threads), "--image-size", str(args.image_size)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{n}-process job failed:\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--layouts", nargs="+", default=[], help="PxT entries (processes x threads each), e.g. 1x2 2x1; replaces --procs/--threads")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--json", type=Path)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)

    try:
        layouts = [tuple(int(v) for v in entry.lower().split("x")) for entry in args.layouts] or [(n, args.threads) for n in args.procs]
        assert all(len(lt) == 2 and min(lt) >= 1 for lt in layouts)
    except (ValueError, AssertionError):
        sys.exit(f"error: --layouts {' '.join(args.layouts)}: each entry is PROCESSESxTHREADS\nfix: e.g. --layouts 1x2 2x1")
    runs: dict[str, list[dict]] = {f"{n}x{t}": [] for n, t in layouts}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for n, t in layouts if rep % 2 == 0 else reversed(layouts):
                r = launch(n, t, args, Path(tmp) / f"{n}x{t}-{rep}.json")
                runs[f"{n}x{t}"].append(r)
                print(f"rep {rep}: {n} process(es) x {t} thread(s): {r['img_per_s']:.1f} img/s ({r['seconds']:.1f} s, amp {r['amp']})", flush=True)
    first = next(iter(runs))
    base = statistics.median(r["img_per_s"] for r in runs[first])
    summary = {k: {"img_per_s_median": statistics.median(r["img_per_s"] for r in rs), "runs": rs} for k, rs in runs.items()}
    for k, s in summary.items():
        s["ratio_vs_first"] = s["img_per_s_median"] / base
        print(f"{k} (processes x threads): median {s['img_per_s_median']:.1f} img/s, x{s['ratio_vs_first']:.2f} vs {first}")
    print(f"load: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k not in ("json", "worker", "out")}, "results": summary, "loadavg_end": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
