"""`histosynth search ...`: GA-GAN architecture search — run (or resume), status, best, retrain, and one worker."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer
import yaml

from histosynth.cli import app
from histosynth.cli.common import ConfigOpt, DryRunOpt, SetOpt, out

search_app = typer.Typer(no_args_is_help=True, help="GA-GAN: aging-evolution search of the generator and discriminator cell (Optuna study, parallel workers).")
app.add_typer(search_app, name="search")


def _cfg(config: Optional[Path], set_: Optional[list[str]], dry_run: bool = False):
    from histosynth.search.config import load_search_config

    cfg = load_search_config(config, set_ or [])
    if dry_run:
        out.print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), highlight=False)
        return None
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return cfg


def _print(data) -> None:
    out.print_json(json.dumps(data, default=str))


@search_app.command("run")
def run(config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt, dry_run: bool = DryRunOpt, workers: Optional[int] = typer.Option(None, "--workers", "-w", help="Local worker processes (default: the config's workers).")) -> None:
    """Run every stage (or resume an interrupted search: finished candidates are kept)."""
    from histosynth.search.driver import run_search

    cfg = _cfg(config, set_, dry_run)
    if cfg is not None:
        _print(run_search(cfg, workers))


@search_app.command("status")
def status(config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt) -> None:
    """Candidates per stage by state, and the best so far."""
    from histosynth.search.driver import status as read_status

    _print(read_status(_cfg(config, set_)))


@search_app.command("best")
def best(config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt) -> None:
    """The best genotype of each stage, with its FID and checkpoint."""
    from histosynth.search.driver import best as read_best

    _print(read_best(_cfg(config, set_)))


@search_app.command("retrain")
def retrain(config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt, steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: the config's retrain_steps).")) -> None:
    """Train the winning pair from scratch and save its generator bundle <out_dir>/winner/generator.pt (logged to MLflow; export and serve it like a trained one)."""
    from histosynth.search.driver import retrain as run_retrain

    _print(run_retrain(_cfg(config, set_), steps))


@search_app.command("worker")
def worker(stage: str = typer.Argument(..., help="g or d"), config: Optional[Path] = ConfigOpt, set_: Optional[list[str]] = SetOpt) -> None:
    """One worker on a running search's study (another machine or pod joins with the same config and storage)."""
    from histosynth.search.worker import run_worker

    n = run_worker(_cfg(config, set_), stage)
    out.print(f"stage {stage}: this worker evaluated {n} candidates")
