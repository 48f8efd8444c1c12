"""`histosynth data ...`: sample data, public dataset recipes, patches and splits."""

from __future__ import annotations

import typer

from histosynth.cli import app

data_app = typer.Typer(no_args_is_help=True, help="Build, fetch, patch and split microscopy data.")
app.add_typer(data_app, name="data")
