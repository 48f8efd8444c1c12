"""`histosynth promote`: move a registry alias (champion) to a version only when the promotion gates pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from histosynth.cli import app
from histosynth.cli.common import out
from histosynth.registry.promote import DEFAULT_NN_EXTRACTOR, QUALITY_LIMITS


@app.command()
def promote(
    model: str = typer.Argument(..., help="Registered model name."),
    version: int = typer.Option(..., "--version", "-v", help="Candidate model version."),
    alias: str = typer.Option("champion", "--alias", "-a", help="Alias to move when every gate passes."),
    metric: str = typer.Option("fid", "--metric", help="Evaluation metric logged on the version's run (fid, kid, precision, ... or a full key such as test/fid)."),
    margin: float = typer.Option(0.05, "--margin", help="Allowed relative regression against the current champion."),
    higher_is_better: Optional[bool] = typer.Option(None, "--higher-is-better/--lower-is-better", help="Metric direction (default: known per metric; lower for fid/kid)."),
    max_parity_diff: float = typer.Option(1e-4, "--max-parity-diff", help="Largest ONNX-vs-PyTorch difference (onnx_parity_max_abs_diff tag) accepted."),
    max_fid: float = typer.Option(QUALITY_LIMITS["max_fid"], "--max-fid", help="Absolute gate: largest FID logged on the version's run that is accepted."),
    min_precision: float = typer.Option(QUALITY_LIMITS["min_precision"], "--min-precision", help="Absolute gate: smallest precision (fidelity) accepted."),
    min_recall: float = typer.Option(QUALITY_LIMITS["min_recall"], "--min-recall", help="Absolute gate: smallest recall (diversity) accepted."),
    min_nn_distance: float = typer.Option(0.1, "--min-nn-distance", help="Smallest nearest-neighbour distance of a sample to the training patches, relative to the train-train median."),
    train_data: Optional[Path] = typer.Option(None, "--train-data", help="Training split (patch store) to check memorization against (default: the run's data.store param)."),
    n_samples: int = typer.Option(256, "--n-samples", help="Generated samples for the memorization gate."),
    n_train: int = typer.Option(2000, "--n-train", help="Training patches compared (seeded subset when the split is larger)."),
    extractor: str = typer.Option(DEFAULT_NN_EXTRACTOR, "--extractor", help="Feature space of the memorization gate (histosynth.evaluation.features)."),
    device: str = typer.Option("auto", "--device"),
    seed: int = typer.Option(0, "--seed"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Run the gates and show them; move nothing, record nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow tracking/registry URI (default: MLFLOW_TRACKING_URI or the local store)."),
) -> None:
    """Promote MODEL --version N to --alias (champion) if its metric, FID/precision/recall, ONNX parity and memorization gates pass (refusal: exit 2)."""
    from histosynth.cli.progress import phases
    from histosynth.registry.promote import PromotionRefused
    from histosynth.registry.promote import promote as run

    def show(result) -> None:
        if as_json:
            print(json.dumps(result.to_dict(), default=str))
            return
        for g in result.gates:
            mark = "[green]pass[/]" if g.passed else "[bold red]FAIL[/]"
            out.print(f"  {mark} {g.name:<13} {g.detail}", soft_wrap=True)

    try:
        with phases(bar=not as_json) as progress:
            result = run(
                model, version, alias, metric=metric, margin=margin, higher_is_better=higher_is_better, max_parity_diff=max_parity_diff,
                quality_limits={"max_fid": max_fid, "min_precision": min_precision, "min_recall": min_recall}, min_nn_distance=min_nn_distance,
                train_data=train_data, n_samples=n_samples, n_train=n_train, extractor=extractor, seed=seed, device=device, dry_run=dry_run,
                tracking_uri=tracking_uri, progress=progress,
            )
    except PromotionRefused as e:
        show(e.result)
        raise
    show(result)
    if as_json:
        return
    if dry_run:
        verdict = "would be promoted" if result.passed else "would be refused"
        out.print(f"[bold]dry run:[/] {model} v{version} {verdict}; {model}@{alias} unchanged (v{result.previous})" if result.previous else f"[bold]dry run:[/] {model} v{version} {verdict}; no '{alias}' alias yet")
    else:
        out.print(f"[bold green]promoted[/] {model}@{alias} -> version {version}" + (f" (was {result.previous})" if result.previous else ""))
