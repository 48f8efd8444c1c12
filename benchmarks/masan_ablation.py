#!/usr/bin/env python
"""MASAN ablation on the sample data: which of its parts buy sample quality, at one fixed budget.

Variants, each trained from ``configs/masan-samples.yaml`` with one part switched off (the config switches
default to the full model):

- full MASAN;
- no Efficient Multi-scale Attention in G (``model.masan_attention=false``);
- no SAN: D's last layer a plain linear head on the hinge loss, no direction term (``model.san=false``);
- no DiffAugment (``augment.policy=none``);
- no reconstruction decoders' loss (``loss.recon_weight=0``: the decoders get no gradient);

and the default DCGAN preset (``configs/dcgan-samples.yaml``) as the reference. Every (variant, seed) cell
trains ``--steps`` generator updates with the same batch, device and data, and is scored against
``--eval-split`` with the FID Inception: FID and KID over all classes, and FID per class (each class's fakes
against that class's real patches, as the paper's Table I) with their mean. Training and scoring, the
resumable ``results.jsonl`` and the summary are benchmarks/quality.py's. The Markdown table sets the mean of
the per-class FIDs beside the paper's Table II; those numbers are not available here, so that column reads
"n/a" (the paper's setting is also another one: B-ALL blood smears at 256 px).

    python benchmarks/masan_ablation.py --device cuda --seeds 0 1 2 --steps 1200 --out bench/masan_ablation
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/ is on sys.path as the folder of the script being run
from quality import budget_parser, results_folder, run_cell, run_grid, summarise, table, write_summary

from histosynth.evaluation.suite import open_split
from histosynth.gan.rl_eo import safe_name

MASAN = "configs/masan-samples.yaml"
# variant -> (preset, overrides)
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "MASAN (full)": (MASAN, ()),
    "no EMA attention": (MASAN, ("model.masan_attention=false",)),
    "no SAN (hinge head)": (MASAN, ("model.san=false",)),
    "no DiffAugment": (MASAN, ("augment.policy=none",)),
    "no recon decoders": (MASAN, ("loss.recon_weight=0",)),
    "DCGAN (dcgan-samples.yaml)": ("configs/dcgan-samples.yaml", ()),
}
# the paper's Table II (mean FID per ablation row); not available here: every entry reads n/a
PAPER_TABLE_II: dict[str, str] = dict.fromkeys(VARIANTS, "n/a")


def main() -> None:
    ap = budget_parser(__doc__, steps=1200, out="bench/masan_ablation")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="VARIANT", help=f"rows to run (default all): {', '.join(VARIANTS)}")
    args = ap.parse_args()
    args.data = str(Path(args.data).absolute())
    if len(args.seeds) < 3:
        print(f"warning: {len(args.seeds)} seed(s): an ablation needs >= 3 for a mean +- std worth reading", file=sys.stderr)

    out, jsonl, uri = results_folder(args.out, {"steps": args.steps})
    classes = open_split(args.data, args.eval_split).classes
    keys = ("fid_class_mean", *(f"fid/{safe_name(c)}" for c in classes), "fid", "kid_mean")

    def cell(variant: str, seed: int) -> dict:
        preset, extra = VARIANTS[variant]
        return run_cell(variant, preset, seed, args, out, uri, extra=extra, metrics="fid,kid", keys=keys, experiment="masan-ablation")

    rows = run_grid(args.variants, args.seeds, jsonl, cell)
    summary = summarise(rows, args.variants, keys)
    write_summary(out, summary, paper_table_ii=PAPER_TABLE_II)
    print(f"\n{args.steps} G steps per run, seeds {args.seeds}, device {args.device}, scored on '{args.eval_split}' with the FID Inception ({rows[0]['n_real']} real vs {rows[0]['n_fake']} synthetic)")
    print("\n".join(table(summary, keys, published=("paper Table II (mean FID)", PAPER_TABLE_II))))
    print("\n'-' under fid/<class>: that class had fewer than 2 real or synthetic samples in the evaluation (FID needs >= 2; raise --eval-n)")
    print("paper Table II: n/a (its numbers are not available here; the paper's runs are B-ALL blood smears at 256 px, not this data)")


if __name__ == "__main__":
    main()
