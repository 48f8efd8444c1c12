"""`histosynth export`: a registered generator (or a bundle) to ONNX, parity-checked against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from histosynth.cli import app
from histosynth.cli.common import out
from histosynth.errors import HistosynthError


@app.command("export")
def export_cmd(
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Registered model name."),
    version: Optional[int] = typer.Option(None, "--version", "-v", help="Model version (default: the latest)."),
    alias: Optional[str] = typer.Option(None, "--alias", "-a", help="Model alias instead of a version."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", "-b", help="Export this generator.pt instead of a registered model (nothing is logged)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: $HISTOSYNTH_HOME/exports/<name>/<version>/)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    atol: float = typer.Option(1e-4, "--atol", help="Max |onnx - torch| allowed by the parity check."),
    batch: int = typer.Option(8, "--check-batch", help="Batch size of the parity check (batch 1 is always checked too)."),
    dynamo: bool = typer.Option(False, "--dynamo/--torchscript", help="torch.export-based exporter (slower) or the TorchScript one."),
    force: bool = typer.Option(False, "--force", help="Export again even if this bundle was exported before, also into a folder histosynth did not write."),
    no_log: bool = typer.Option(False, "--no-log", help="Do not log model.onnx/parity.json to the model version's run."),
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow URI (default: MLFLOW_TRACKING_URI or the local store)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Export to ONNX (dynamic batch; inputs z[, class_id]; outputs images, images_uint8) with a parity check."""
    from histosynth.export.onnx import export_bundle, export_registered

    if (name is None) == (bundle is None):
        raise HistosynthError("pass exactly one of --name NAME or --bundle PATH")
    if version is not None and alias:
        raise HistosynthError("pass --version or --alias, not both")
    kwargs = dict(opset=opset, atol=atol, batch_for_check=batch, dynamo=dynamo)
    if bundle is not None:
        res = export_bundle(bundle, out_dir, force=force, **kwargs)
    else:
        res = export_registered(name, version=version, alias=alias, out_dir=out_dir, log_to_run=not no_log, force=force, tracking_uri=tracking_uri, **kwargs)
    rep = res["report"]
    if as_json:
        print(json.dumps({k: v for k, v in res.items() if k != "report"} | {"max_abs_diff": rep["max_abs_diff"]}))
        return
    what = f"{name} v{res['version']}" if name else str(bundle)
    out.print(f"[bold green]exported[/] {what}{' (cached)' if res['cached'] else ''}: max |onnx - torch| = {rep['max_abs_diff']:.2e} (atol {rep['atol']:g}), opset {rep['opset']}", soft_wrap=True)
    out.print(f"  onnx     {res['onnx_path']}", soft_wrap=True)
    out.print(f"  parity   {res['parity_path']}", soft_wrap=True)
    if res.get("artifact_uri"):
        out.print(f"  logged   {res['artifact_uri']} (+ parity.json; tag onnx_parity_max_abs_diff)", soft_wrap=True)
