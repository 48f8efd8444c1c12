#!/usr/bin/env python
"""RL-EO vs its base GAN (improved DCGAN): same data, same budget, several seeds; FID/KID and the reward curve.

For every seed both methods train from their presets (``configs/improved-dcgan-samples.yaml`` and
``configs/rl-eo-samples.yaml``: identical but for the RL-EO reward) with the same overrides (``--set``, size,
steps), then ``histosynth.evaluation.suite.evaluate_generator`` scores each generator bundle against a real split with
the named extractor (default ``inception-fid``, the standard FID network, weights from the cache). The
MFT-SNN comes from ``--snn PATH``; without it one is trained first with ``histosynth snn pairs`` + ``histosynth
snn train --stage all`` on the same splits (configs/mft-snn-samples.yaml).

Reported per seed: FID/KID of each method, the RL-EO reward at the first and last log step, and whether the two
generators ended bit-identical. The reward carries no gradient (see histosynth/gan/rl_eo.py), so on CPU with
deterministic kernels they do, and identical weights give identical samples and scores: the FID is then
computed once and reported for both (``--eval-both`` computes it twice anyway). Writes a JSON file, the reward
curves (PNG, also in each run's MLflow record) and prints a table.

    python benchmarks/rl_eo_vs_dcgan.py --snn /path/to/snn.pt --seeds 0 1 2 --steps 30 --out bench/rl_eo_vs_dcgan
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from histosynth.gan.baselines import preset_path
from histosynth.config import load_config
from histosynth.errors import HistosynthError
from histosynth.evaluation.config import DEFAULT_EXTRACTOR

METHODS = ("improved DCGAN", "RL-EO")


def train_snn(out: Path, data: Path, uri: str) -> Path:
    """A small MFT-SNN via the CLI (pairs, then stage 1 + 2 on configs/mft-snn-samples.yaml)."""
    exe = shutil.which("histosynth") or str(Path(sys.executable).with_name("histosynth"))
    help_ = subprocess.run([exe, "snn", "train", "--help"], capture_output=True, text=True)
    if help_.returncode != 0:
        raise HistosynthError("no --snn given and `histosynth snn train` is not available", "pass --snn PATH to a trained snn.pt")
    cfg = str(preset_path("mft-snn", "samples"))
    steps = [
        [exe, "snn", "pairs", "-c", cfg, "--root", str(data), "--out", str(out / "pairs")],
        [exe, "snn", "train", "-c", cfg, "--stage", "all", "-s", f"train.pairs={out / 'pairs'}", "-s", f"train.out_dir={out / 'snn'}", "-s", f"tracking.tracking_uri={uri}", "--no-progress"],
    ]
    for cmd in steps:
        print("+", " ".join(cmd), file=sys.stderr, flush=True)
        if subprocess.run(cmd).returncode != 0:
            raise HistosynthError(f"training the SNN failed: {' '.join(cmd)}", "train one yourself and pass --snn PATH")
    found = sorted((out / "snn").rglob("snn.pt"), key=lambda p: ("stage2" not in str(p), str(p)))
    if not found:
        raise HistosynthError(f"`histosynth snn train` wrote no snn.pt under {out / 'snn'}", "pass --snn PATH")
    return found[0]


def weights_identical(a: Path, b: Path) -> bool:
    sa, sb = torch.load(a, weights_only=True)["state_dict"], torch.load(b, weights_only=True)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snn", default=None, help="trained MFT-SNN snn.pt (default: train a small one with `histosynth snn train`)")
    ap.add_argument("--data", default="data/splits", help="split folder (train split for training, --eval-split for scores)")
    ap.add_argument("--eval-split", default="test")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=30, help="G steps per run (the same budget for both)")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--set", "-s", dest="overrides", action="append", default=[], help="extra config override for both methods (repeatable)")
    ap.add_argument("--extractor", default=DEFAULT_EXTRACTOR, help="feature extractor for FID/KID (histosynth evaluate --extractor)")
    ap.add_argument("--metrics", default="fid,kid")
    ap.add_argument("--n-fake", type=int, default=None, help="generated images per evaluation (default: as many as real)")
    ap.add_argument("--eval-both", action="store_true", help="evaluate both generators even when their weights are identical")
    ap.add_argument("--out", default="bench/rl_eo_vs_dcgan", help="folder for the JSON, reward curves and the MLflow store")
    args = ap.parse_args()

    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{out / 'mlflow.db'}"
    data = Path(args.data).absolute()
    t0 = time.perf_counter()
    snn = Path(args.snn).absolute() if args.snn else train_snn(out, data, uri)

    from histosynth.evaluation.suite import evaluate_generator
    from histosynth.gan.train import train

    common = [
        f"data.root={data}", f"data.image_size={args.image_size}", f"model.g_features={args.features}", f"model.d_features={args.features}",
        f"train.batch_size={args.batch}", f"train.max_steps={args.steps}", "train.epochs=1000", f"train.device={args.device}",
        "train.log_every=2", "train.sample_every=0", "train.checkpoint_every=0", f"tracking.tracking_uri={uri}", "tracking.experiment=rl-eo-vs-dcgan",
        *args.overrides,
    ]
    rows = []
    for seed in args.seeds:
        row: dict = {"seed": seed}
        bundles = {}
        for method in METHODS:
            extra = [f"rl_eo.snn={snn}"] if method == "RL-EO" else []
            run_dir = out / "runs" / f"{method.replace(' ', '-')}-seed{seed}"
            cfg = load_config(preset_path(method), [*common, f"train.seed={seed}", f"train.out_dir={run_dir}", f"tracking.run_name={method} seed {seed}", *extra])
            print(f"== seed {seed}: {method} ({args.steps} steps)", file=sys.stderr, flush=True)
            res = train(cfg, progress=sys.stderr.isatty())
            bundles[method] = res.bundle
            row[method] = {"run_id": res.run_id, "train_wall_s": round(res.wall_s, 1), "steps": res.steps, "device": res.device, "loss_d": res.metrics.get("loss_d"), "loss_g": res.metrics.get("loss_g")}
            if method == "RL-EO":
                import mlflow

                client = mlflow.MlflowClient(tracking_uri=uri)
                hist = client.get_metric_history(res.run_id, "rl_eo/reward")
                row[method]["reward_first_last"] = [hist[0].value, hist[-1].value] if hist else None
                row[method]["reward_curve"] = [(m.step, m.value) for m in sorted(hist, key=lambda m: m.step)]
                if res.reward_curve:
                    dest = out / f"reward_curve_seed{seed}.png"
                    shutil.copy(res.reward_curve, dest)
                    row[method]["reward_curve_png"] = str(dest)
        row["weights_identical"] = weights_identical(Path(bundles[METHODS[0]]), Path(bundles[METHODS[1]]))
        for method in METHODS:
            if method == "RL-EO" and row["weights_identical"] and not args.eval_both:
                row[method]["scores"] = dict(row[METHODS[0]]["scores"])
                row[method]["scores_note"] = "weights identical to improved DCGAN's: same samples, same scores (computed once)"
                continue
            rec = evaluate_generator(bundles[method], data, split=args.eval_split, n_fake=args.n_fake, metrics=args.metrics, extractor=args.extractor, seed=seed, device=args.device, mlflow_run_id=row[method]["run_id"], tracking_uri=uri)
            row[method]["scores"] = {k: v for k, v in rec["metrics"].items() if isinstance(v, (int, float))}
            row["extractor"] = rec["extractor"]
            row["comparable_with_published"] = rec.get("comparable_with_published")
            row["n_real"], row["n_fake"] = rec.get("n_real"), rec.get("n_fake")
        rows.append(row)

    keys = sorted({k for r in rows for m in METHODS for k in r[m]["scores"]})
    summary = {}
    for m in METHODS:
        summary[m] = {}
        for k in keys:
            vals = [r[m]["scores"][k] for r in rows if k in r[m]["scores"]]
            summary[m][k] = {"mean": statistics.mean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals)}
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "snn": str(snn),
        "data": str(data),
        "eval_split": args.eval_split,
        "budget": {"steps": args.steps, "image_size": args.image_size, "features": args.features, "batch": args.batch},
        "extractor": args.extractor,
        "torch": torch.__version__,
        "wall_s": round(time.perf_counter() - t0, 1),
        "seeds": rows,
        "summary": summary,
    }
    (out / "rl_eo_vs_dcgan.json").write_text(json.dumps(result, indent=2, default=str) + "\n")

    print(f"\nRL-EO vs improved DCGAN: {args.steps} G steps, {args.image_size} px, batch {args.batch}, features {args.features}; scores on '{args.eval_split}' with {args.extractor}; SNN {snn}")
    print("| seed | " + " | ".join(f"{m} {k}" for k in keys for m in METHODS) + " | identical weights | reward first -> last |")
    print("|---" * (1 + 2 * len(keys) + 2) + "|")
    for r in rows:
        rf = r["RL-EO"].get("reward_first_last")
        cells = [f"{r[m]['scores'].get(k, float('nan')):.4g}" for k in keys for m in METHODS]
        reward = f"{rf[0]:.4f} -> {rf[1]:.4f}" if rf else "-"
        print(f"| {r['seed']} | " + " | ".join(cells) + f" | {r['weights_identical']} | {reward} |")
    print("| mean +- std | " + " | ".join(f"{summary[m][k]['mean']:.4g} +- {summary[m][k]['std']:.2g}" for k in keys for m in METHODS) + " | | |")
    print(f"\nJSON: {out / 'rl_eo_vs_dcgan.json'}; MLflow: {uri}")


if __name__ == "__main__":
    main()
