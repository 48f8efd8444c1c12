#!/usr/bin/env python
"""GA-GAN on the sample data: the searched cells against the paper's hand-picked cell and the default DCGAN at one
final training budget, and the search's throughput with one and two workers.

Quality rows (every (row, seed) cell trains ``--steps`` generator updates at ``--batch`` from scratch, and is
scored against ``--eval-split`` with the FID Inception: FID, KID, precision, recall, F1; the resumable
``results.jsonl`` and the summary are benchmarks/quality.py's):

- the search's winners: stage-g generator cell with the stage-d discriminator cell;
- the same generator against the paper's hand-picked discriminator cell ``{4, 235-66-7, [ATTN]}`` (attention after
  the last cell). The paper hand-picks only this D cell (stage 1 searches G against it); its tape holds the
  D-only pooling ops, so it has no generator counterpart to set beside a searched G;
- the default DCGAN preset (``configs/dcgan-samples.yaml``) at the same image size.

The GA-GAN rows train with the search's own recipe (hinge loss, TTUR Adam, DiffAugment; ``search retrain``'s
:func:`histosynth.search.driver.train_bundle`) and the search's widths, read from the search's ``search.yaml``.

``--throughput``: the same tiny search (stage g, ``--tp-population`` + ``--tp-cycles`` candidates) run with 1 and
then 2 local workers; candidates finished per minute of wall time and the ratio.

    python benchmarks/ga_gan.py --search bench/ga-cpu/search --data data/splits --steps 100 --batch 16 --device cpu
    python benchmarks/ga_gan.py --search bench/ga-cpu/search --data data/splits --throughput
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

# benchmarks/ is on sys.path as the folder of the script being run
from quality import budget_parser, results_folder, run_cell, run_grid, scored_row, slug, summarise, table, write_summary

from histosynth.gan.nets.ga_gan import stages_for
from histosynth.gan.nets.ga_gan_genotype import Genotype
from histosynth.search.config import SearchConfig, load_search_config

SEARCHED, PAPER_D, DCGAN = "GA-GAN searched G + searched D", "GA-GAN searched G + paper's D cell", "DCGAN (dcgan-samples.yaml)"
ROWS = (SEARCHED, PAPER_D, DCGAN)


def paper_d(image_size: int) -> str:
    """The paper's hand-picked discriminator cell, attention after the last cell of a network this size."""
    return f"{{4, 235-66-7, [{stages_for(image_size)}]}}"


def search_config(folder: Path, overrides: list[str]) -> SearchConfig:
    path = folder / "search.yaml"
    if not path.is_file():
        sys.exit(f"error: no search settings at {path}\nfix: pass --search the out_dir of a `histosynth search run` (it writes search.yaml there)")
    return load_search_config(path, overrides)


def ga_gan_cell(row: str, seed: int, args, out: Path, uri: str) -> dict:
    import torch

    from histosynth.gan.bundle import load_generator
    from histosynth.gan.train.plots import sample_grid
    from histosynth.search.driver import best, train_bundle

    cfg = search_config(Path(args.search), [f"seed={seed}", f"data_root={args.data}", f"device={args.device}", f"tracking_uri={uri}", "experiment=ga-gan-benchmark", *([f"batch_size={args.batch}"] if args.batch else [])])
    found = best(cfg)
    g = Genotype.parse(found["g"]["genotype"], "g")
    d = Genotype.parse(found["d"]["genotype"] if row == SEARCHED else paper_d(cfg.image_size), "d")
    folder = out / "runs" / f"{slug(row)}-seed{seed}"
    t0 = time.perf_counter()
    res = train_bundle(cfg, g, d, folder, args.steps, f"{row} seed {seed}", score=False)
    train_s = time.perf_counter() - t0
    gen, meta = load_generator(res["path"])
    n = len(meta["classes"])
    gen_cpu = torch.Generator().manual_seed(seed)
    grid = sample_grid(gen, torch.randn(8 * n, cfg.latent_dim, generator=gen_cpu), torch.arange(8 * n) // 8, out / f"grid-{folder.name}.png")
    fields = {"g_genotype": str(g), "d_genotype": str(d), "steps": args.steps, "batch": cfg.batch_size, "image_size": cfg.image_size, "device": args.device, "grid": str(grid)}
    return scored_row(row, seed, res["path"], res["run_id"], train_s, args, uri, **fields)


def quality(args) -> None:
    image_size = search_config(Path(args.search), []).image_size
    out, jsonl, uri = results_folder(args.out, {"steps": args.steps, "batch": args.batch, "image_size": image_size})

    def cell(row: str, seed: int) -> dict:
        if row == DCGAN:
            extra = (f"data.image_size={image_size}",)
            return {**run_cell(row, "configs/dcgan-samples.yaml", seed, args, out, uri, extra=extra, experiment="ga-gan-benchmark"), "image_size": image_size}
        return ga_gan_cell(row, seed, args, out, uri)

    rows = run_grid(args.rows, args.seeds, jsonl, cell)
    summary = summarise(rows, args.rows)
    write_summary(out, summary, genotypes={r["method"]: [r.get("g_genotype"), r.get("d_genotype")] for r in rows})
    print(f"\n{args.steps} G steps per run at batch {rows[0]['batch']}, {image_size} px, seeds {args.seeds}, device {args.device}, scored on '{args.eval_split}' with the FID Inception ({rows[0]['n_real']} real vs {rows[0]['n_fake']} synthetic)")
    print("\n".join(table(summary)))
    for r in (SEARCHED, PAPER_D):
        mine = [x for x in rows if x["method"] == r]
        if mine:
            print(f"{r}: G {mine[0]['g_genotype']}, D {mine[0]['d_genotype']}")


def throughput(args) -> None:
    """The tiny search at ``workers`` 1 then 2, each in its own folder (a finished one is read back, not rerun)."""
    import optuna

    from histosynth.search import fitness
    from histosynth.search.driver import run_search
    from histosynth.search.worker import open_study

    out = Path(args.out).absolute() / "throughput"
    base = search_config(Path(args.search), [f"data_root={args.data}", f"device={args.device}"])
    results = {}
    fitness.load_data(base)  # the real FID statistics, cached before either run is timed
    for workers in (1, 2):
        folder = out / f"workers-{workers}"
        cfg = dataclasses.replace(
            base, name="throughput", stages="g", out_dir=str(folder), storage="", tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", workers=workers,
            population=args.tp_population, sample=max(1, args.tp_population // 2), cycles=args.tp_cycles, steps=args.tp_steps, n_fake=args.tp_n_fake,
            g_width=args.tp_g_width, d_width=args.tp_d_width, batch_size=args.batch or base.batch_size,
        ).validate()
        marker = folder / "wall.json"
        if not marker.is_file():
            t0 = time.perf_counter()
            run_search(cfg)
            folder.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps({"wall_s": time.perf_counter() - t0}))
        wall = json.loads(marker.read_text())["wall_s"]
        done = open_study(cfg, "g").get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        busy = max(t.user_attrs["ended"] for t in done) - min(t.user_attrs["started"] for t in done)
        results[workers] = {"candidates": len(done), "wall_s": round(wall, 1), "per_min_wall": 60 * len(done) / wall, "per_min_trials": 60 * len(done) / busy}
    setting = f"{base.image_size} px, G width {args.tp_g_width}, D width {args.tp_d_width}, batch {args.batch or base.batch_size}, {args.tp_steps} steps and FID of {args.tp_n_fake} fakes per candidate"
    print(f"\nsearch throughput, stage g, {results[1]['candidates']} candidates ({args.tp_population} random + {args.tp_cycles} bred), {setting}")
    print("| workers | candidates | wall s (driver, incl. start-up) | candidates / min (wall) | candidates / min (first start to last end) |\n|---|---|---|---|---|")
    for w, r in results.items():
        print(f"| {w} | {r['candidates']} | {r['wall_s']} | {r['per_min_wall']:.2f} | {r['per_min_trials']:.2f} |")
    print(f"| ratio 2 / 1 | | | {results[2]['per_min_wall'] / results[1]['per_min_wall']:.2f} | {results[2]['per_min_trials'] / results[1]['per_min_trials']:.2f} |")
    (out / "summary.json").write_text(json.dumps({"command": " ".join([Path(sys.executable).name, *sys.argv]), "setting": setting, "results": results}, indent=2) + "\n")


def main() -> None:
    ap = budget_parser(__doc__, steps=100, out="bench/ga_gan")
    ap.add_argument("--search", required=True, help="out_dir of a finished `histosynth search run` (its search.yaml and study)")
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS), metavar="ROW", help=f"rows to run (default all): {', '.join(ROWS)}")
    ap.add_argument("--throughput", action="store_true", help="measure search throughput with 1 vs 2 workers instead")
    ap.add_argument("--tp-population", type=int, default=4)
    ap.add_argument("--tp-cycles", type=int, default=4)
    ap.add_argument("--tp-steps", type=int, default=10)
    ap.add_argument("--tp-n-fake", type=int, default=32)
    ap.add_argument("--tp-g-width", type=int, default=16)
    ap.add_argument("--tp-d-width", type=int, default=4)
    args = ap.parse_args()
    args.data = str(Path(args.data).absolute())
    if args.throughput:
        throughput(args)
        return
    if len(args.seeds) < 3:
        print(f"warning: {len(args.seeds)} seed(s): a comparison needs >= 3 for a mean +- std worth reading", file=sys.stderr)
    quality(args)


if __name__ == "__main__":
    main()
