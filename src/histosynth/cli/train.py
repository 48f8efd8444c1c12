"""`histosynth train`: train a GAN from a preset, tracked in MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from histosynth.cli import app
from histosynth.cli.common import ConfigOpt, DryRunOpt, SetOpt, resolve


@app.command()
def train(config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt, dry_run: bool = DryRunOpt) -> None:
    """Train a GAN (DCGAN by default) on a patch split; every run is tracked in MLflow."""
    cfg = resolve(config, set_, dry_run)
    if cfg is None:
        return
    raise typer.Exit(1)
