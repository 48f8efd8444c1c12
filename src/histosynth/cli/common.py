"""Options shared by stage commands: presets, overrides and --dry-run."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.syntax import Syntax

from histosynth import defaults
from histosynth.config import load_config
from histosynth.config.base import Sections

out = Console()

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML preset from configs/ (only what differs from the defaults).")
SetOpt = typer.Option(None, "--set", "-s", help="Override a value: section.key=value (repeatable).")
DryRunOpt = typer.Option(False, "--dry-run", help="Print the resolved config and exit.")
ForceOpt = typer.Option(False, "--force", help="Replace the output even if histosynth did not write it (its current contents are lost).")


def print_config(cfg: Sections) -> None:
    """--dry-run: the state folder in use, then the resolved config as YAML."""
    out.print(f"# {defaults.describe_state()}", highlight=False, soft_wrap=True)
    out.print(Syntax(cfg.to_yaml(), "yaml"))


def resolve(config: Optional[Path], overrides: Optional[list[str]], dry_run: bool, load: Callable[..., Any] = load_config) -> Any:
    """Load the config (GAN by default; ``load``: e.g. the MFT-SNN's); with --dry-run print it and return None."""
    cfg = load(config, overrides or [])
    if dry_run:
        print_config(cfg)
        return None
    return cfg
