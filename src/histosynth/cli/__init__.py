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
    import histosynth.cli.search  # noqa: F401


def main() -> None:
    """Entry point: user errors print as 'error: ... / fix: ...' and exit 2, without a traceback.

    A file-system error (a path that is a file, unwritable, missing) is a user error too: it names the path."""
    _register()
    try:
        app()
    except HistosynthError as e:
        _fail(e.problem, e.hint)
    except OSError as e:
        where = f" ('{e.filename}')" if e.filename else ""
        _fail(f"{e.strerror or e}{where}", "check the path and its permissions (a file where a folder is expected, a read-only or full disk)")


def _fail(problem: str, hint: str | None) -> None:
    err.print(f"[bold red]error:[/] {problem}", highlight=False, soft_wrap=True)
    if hint:
        err.print(f"[yellow]fix:[/] {hint}", highlight=False, soft_wrap=True)
    sys.exit(2)
