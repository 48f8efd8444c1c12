"""`histosynth register` / `histosynth alias`: generator bundles in the MLflow model registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from histosynth.cli import app
from histosynth.cli.common import out
from histosynth.errors import HistosynthError

TrackingOpt = typer.Option("", "--tracking-uri", help="MLflow tracking/registry URI (default: MLFLOW_TRACKING_URI or the local SQLite store).")


def _tags(items: Optional[list[str]]) -> dict[str, str]:
    tags = {}
    for item in items or []:
        if "=" not in item:
            raise HistosynthError(f"tag '{item}' has no '='", "write tags as key=value")
        k, v = item.split("=", 1)
        tags[k.strip()] = v
    return tags


@app.command()
def register(
    name: str = typer.Option(..., "--name", "-n", help="Registered model name."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Training run whose generator/ artifact to register."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", "-b", help="A generator.pt (or its folder) to log and register."),
    alias: Optional[str] = typer.Option(None, "--alias", "-a", help="Point this alias (e.g. production) at the new version."),
    description: str = typer.Option("", "--description", help="Model-version description."),
    tag: Optional[list[str]] = typer.Option(None, "--tag", "-t", help="Model-version tag key=value (repeatable)."),
    tracking_uri: str = TrackingOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the model version as JSON."),
) -> None:
    """Register a trained generator (--run-id ID, or --bundle PATH) as a new model version."""
    from histosynth import registry

    if run_id is None and bundle is None:
        raise HistosynthError("nothing to register", "pass --run-id ID (a training run) or --bundle PATH (a generator.pt)")
    mv = registry.register_generator(bundle, name, run_id=run_id, tags=_tags(tag), description=description, alias=alias, tracking_uri=tracking_uri)
    info = registry.model_version_info(mv)
    if as_json:
        print(json.dumps(info))
        return
    out.print(f"[bold green]registered[/] {info['name']} version {info['version']}" + (f" (alias {', '.join(info['aliases'])})" if info["aliases"] else ""), soft_wrap=True)
    out.print(f"  run id   {info['run_id']}")
    out.print(f"  source   {info['source']}", soft_wrap=True)
    out.print(f"  next     histosynth export --name {info['name']} --version {info['version']}")


@app.command()
def alias(
    name: str = typer.Option(..., "--name", "-n", help="Registered model name."),
    version: int = typer.Option(..., "--version", "-v", help="Model version the alias points at."),
    alias_: str = typer.Option(..., "--alias", "-a", help="Alias to set (moved if it exists)."),
    tracking_uri: str = TrackingOpt,
) -> None:
    """Point NAME@ALIAS at a model version."""
    from histosynth import registry

    registry.set_alias(name, alias_, version, tracking_uri=tracking_uri)
    out.print(f"{name}@{alias_} -> version {version}")
