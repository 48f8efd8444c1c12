#!/usr/bin/env python
"""Sample quality at a fixed budget: the paper's plain DCGAN, the data-efficient DCGAN with its own discriminator,
and the default (the same with a Projected GAN discriminator), side by side.

Every (method, seed) cell trains from its preset (plus the method's own overrides) with the same budget overrides
(steps, batch, device), then
``histosynth.evaluation.suite.evaluate_generator`` scores the generator against the real ``--eval-split`` with the FID
Inception (FID, KID, precision, recall, F1). Cells append to ``results.jsonl`` as they finish and finished
cells are skipped on a re-run, so the benchmark can be run in parts. The summary (mean +- std per method and
the ratio of each metric to the plain DCGAN's) is printed as a Markdown table and written to ``summary.json``;
each cell's final sample grid is copied next to it.

    python benchmarks/quality.py --seeds 0 1 2 --steps 1200 --out bench/quality
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

from histosynth.config import load_config

# name -> (preset, overrides): the previous defaults are today's preset with the discriminator, G and optimiser they had.
METHODS = {
    "DCGAN (paper)": ("configs/dcgan-plain-samples.yaml", ()),
    "data-efficient, own D": ("configs/dcgan-samples.yaml", ("model.discriminator=own", "model.g_features=32", "model.upsample=resize", "model.g_cond_bn=false", "optim.lr_g=2e-4", "optim.beta1=0.5", "optim.beta2=0.999")),
    "projected D (dcgan-samples.yaml)": ("configs/dcgan-samples.yaml", ()),
}
KEYS = ("fid", "kid_mean", "precision", "recall", "f1")


def results_folder(out: str, budget: dict[str, object]) -> tuple[Path, Path, str]:
    """-> (the output folder, made; its results.jsonl; its MLflow URI). Exits with an error when the JSONL holds
    cells of another ``budget`` (e.g. steps): resuming next to them would mix budgets in one table."""
    folder = Path(out).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    jsonl = folder / "results.jsonl"
    want = tuple(budget.values())
    other = sorted({tuple(r.get(k) for k in budget) for r in read_done(jsonl).values()} - {want}, key=str)
    if other:
        names = ", ".join(budget)
        print(f"error: {jsonl} holds cells of another budget ({names}) {other}, not {want}\nfix: pass another --out, or the same {names} to resume", file=sys.stderr)
        sys.exit(2)
    return folder, jsonl, f"sqlite:///{folder / 'mlflow.db'}"


def read_done(path: Path) -> dict[tuple[str, int], dict]:
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["method"], r["seed"]): r for r in rows}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def run_cell(method: str, preset: str, seed: int, args, out: Path, uri: str, *, extra=(), metrics: str = "fid,kid,pr", keys=KEYS, experiment: str = "quality-benchmark", similarity=None) -> dict:
    """Train ``preset`` (+ the budget overrides, + ``extra``) with ``seed`` and score it (:func:`scored_row`)."""
    from histosynth.gan.train import train

    run_dir = out / "runs" / f"{slug(method)}-seed{seed}"
    cfg = load_config(
        preset,
        [
            f"data.root={args.data}", f"train.seed={seed}", f"train.max_steps={args.steps}", "train.epochs=100000",
            f"train.device={args.device}", "train.sample_every=0", "train.checkpoint_every=0", f"train.out_dir={run_dir}",
            f"tracking.tracking_uri={uri}", f"tracking.experiment={experiment}", f"tracking.run_name={method} seed {seed}",
            *([f"train.batch_size={args.batch}"] if args.batch else []), *extra, *args.overrides,
        ],
    )
    t0 = time.perf_counter()
    res = train(cfg, progress=sys.stderr.isatty(), similarity=similarity)
    train_s = time.perf_counter() - t0
    grid = out / f"grid-{run_dir.name}.png"
    if res.samples:
        shutil.copy(res.samples, grid)
    fields = {"preset": preset, "extra": list(extra), "steps": res.steps, "batch": cfg.train.batch_size, "device": res.device, "grid": str(grid)}
    return scored_row(method, seed, res.bundle, res.run_id, train_s, args, uri, metrics=metrics, keys=keys, **fields)


def scored_row(method: str, seed: int, bundle, run_id: str, train_s: float, args, uri: str, *, metrics: str = "fid,kid,pr", keys=KEYS, **fields) -> dict:
    """Score a trained generator bundle against ``args.eval_split`` with the FID Inception (logged to its run);
    -> the JSONL row: method, seed, ``fields``, timings, sample counts and the ``keys`` metrics."""
    from histosynth.evaluation.config import DEFAULT_EXTRACTOR
    from histosynth.evaluation.suite import evaluate_generator

    t0 = time.perf_counter()
    rec = evaluate_generator(bundle, args.data, split=args.eval_split, metrics=metrics, extractor=DEFAULT_EXTRACTOR, seed=seed, device=args.device, mlflow_run_id=run_id, tracking_uri=uri, n_real=args.eval_n or None, n_fake=args.eval_n or None)
    eval_s = time.perf_counter() - t0
    return {
        "method": method, "seed": seed, **fields, "train_s": round(train_s, 1), "eval_s": round(eval_s, 1), "run_id": run_id, "n_real": rec["n_real"], "n_fake": rec["n_fake"],
        **{k: rec["metrics"][k] for k in keys if k in rec["metrics"]},
    }


def run_grid(methods, seeds, jsonl: Path, cell) -> list[dict]:
    """``cell(method, seed) -> row`` for every (method, seed) not yet in ``jsonl``; each row is appended as it
    finishes, so an interrupted benchmark resumes where it stopped. -> the rows of these methods and seeds."""
    done = read_done(jsonl)
    for seed in seeds:
        for method in methods:
            if (method, seed) in done:
                print(f"== {method} seed {seed}: done, skipped", file=sys.stderr)
                continue
            print(f"== {method} seed {seed}", file=sys.stderr, flush=True)
            row = cell(method, seed)
            with jsonl.open("a") as f:
                f.write(json.dumps(row) + "\n")
            done[(method, seed)] = row
    return [r for (m, s), r in done.items() if m in methods and s in seeds]


def summarise(rows: list[dict], methods=METHODS, keys=KEYS) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        out[method] = {}
        for k in (*keys, "train_s", "eval_s"):
            vals = [r[k] for r in mine if k in r]
            if vals:
                out[method][k] = {"mean": statistics.mean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals)}
    return out


def table(summary: dict, keys=KEYS, published: tuple[str, dict[str, str]] | None = None) -> list[str]:
    """Markdown rows: mean +- std per metric (``-`` where a method has none) and the wall times of a run;
    ``published`` (column title, method -> value) adds a last column of published numbers beside them."""
    title, values = published or ("", {})
    extra = [title] if published else []
    lines = ["| method | " + " | ".join([*keys, "train s", "eval s", *extra]) + " |", "|---" * (len(keys) + 3 + len(extra)) + "|"]
    for method, s in summary.items():
        cells = [f"{s[k]['mean']:.4g} +- {s[k]['std']:.2g}" if k in s else "-" for k in (*keys, "train_s", "eval_s")]
        lines.append(f"| {method} | " + " | ".join([*cells, *([values.get(method, "-")] if published else [])]) + " |")
    return lines


def write_summary(out: Path, summary: dict, **extra) -> None:
    (out / "summary.json").write_text(json.dumps({"command": " ".join([Path(sys.executable).name, *sys.argv]), "torch": torch.__version__, **extra, "summary": summary}, indent=2) + "\n")


def budget_parser(doc: str, *, steps: int, out: str) -> argparse.ArgumentParser:
    """The options every fixed-budget benchmark built on :func:`run_cell` takes (what ``run_cell`` reads from
    ``args``): data, evaluation split and size, seeds, steps, batch, device, overrides, output folder."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/splits", help="split folder: 'train' to train on, --eval-split to score against")
    ap.add_argument("--eval-split", default="test")
    ap.add_argument("--eval-n", type=int, default=0, help="score a seeded subset of N real patches against N fakes (0: the whole split)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=steps, help="G steps per run, the same for every method")
    ap.add_argument("--batch", type=int, default=0, help="batch size for every method (0: each preset's own)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--set", "-s", dest="overrides", action="append", default=[], help="extra override for every method (repeatable)")
    ap.add_argument("--out", default=out)
    return ap


def main() -> None:
    ap = budget_parser(__doc__, steps=1200, out="bench/quality")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), help="run only these (the summary reads every finished cell)")
    args = ap.parse_args()
    args.data = str(Path(args.data).absolute())

    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / "results.jsonl"
    uri = f"sqlite:///{out / 'mlflow.db'}"
    run_grid([m for m in METHODS if m in args.methods], args.seeds, jsonl, lambda method, seed: run_cell(method, METHODS[method][0], seed, args, out, uri, extra=METHODS[method][1]))
    rows = [r for (m, seed), r in read_done(jsonl).items() if m in METHODS and seed in args.seeds]  # every finished method
    summary = summarise(rows)
    if any(not s for s in summary.values()):
        print("not every method has finished cells yet: run the others (--methods) to get the comparison", file=sys.stderr)
        return
    write_summary(out, summary)
    base = summary[next(iter(METHODS))]
    print(f"\n{args.steps} G steps per run, seeds {args.seeds}, scored on '{args.eval_split}' with the FID Inception ({rows[0]['n_real']} real vs {rows[0]['n_fake']} synthetic)")
    print("\n".join(table(summary)))
    for method, s in list(summary.items())[1:]:
        ratios = {k: s[k]["mean"] / base[k]["mean"] for k in KEYS if base[k]["mean"]}
        print(f"| ratio {method} / DCGAN (paper) | " + " | ".join(f"{ratios[k]:.3f}" if k in ratios else "-" for k in KEYS) + " | |")


if __name__ == "__main__":
    main()
