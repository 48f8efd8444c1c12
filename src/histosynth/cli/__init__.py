"""The ``histosynth`` command: one sub-command per stage. Each stage module registers itself here."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from histosynth.errors import HistosynthError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Train, evaluate and serve GANs for microscopy patches.")
err = Console(stderr=True)


def _register() -> None:
    # each module attaches its commands to `app`
    import histosynth.cli.data  # noqa: F401
    import histosynth.cli.train  # noqa: F401
    import histosynth.cli.evaluate  # noqa: F401
    import histosynth.cli.registry  # noqa: F401
    import histosynth.cli.export  # noqa: F401
    import histosynth.cli.serve  # noqa: F401
    import histosynth.cli.synth  # noqa: F401
    import histosynth.cli.pipeline  # noqa: F401
    import histosynth.cli.promote  # noqa: F401
    import histosynth.cli.snn  # noqa: F401


def main() -> None:
    """Entry point: user errors print as 'error: ... / fix: ...' and exit 2, without a traceback."""
    _register()
    try:
        app()
    except HistosynthError as e:
        err.print(f"[bold red]error:[/] {e.problem}")
        if e.hint:
            err.print(f"[yellow]fix:[/] {e.hint}")
        sys.exit(2)
