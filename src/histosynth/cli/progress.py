"""Progress of long commands (evaluate, promote) on stderr: a line when each phase starts and ends, with its
duration, so plain logs show where the time goes; on a terminal also a live bar per phase."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

Callback = Callable[[str, int, int], None]  # (phase, done, total), as histosynth.evaluation.suite.Progress


@contextmanager
def phases(console: Console | None = None, bar: bool = True) -> Iterator[Callback]:
    """Yield a ``progress(phase, done, total)`` callback; ``bar=False`` keeps only the phase lines."""
    console = console or Console(stderr=True)
    started: dict[str, float] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(), console=console, transient=True, disable=not bar) as live:
        tasks: dict[str, int] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in started:
                started[phase] = time.perf_counter()
                console.print(f"[cyan]>[/] {phase} ({total})", highlight=False)
                tasks[phase] = live.add_task(phase, total=total)
            live.update(tasks[phase], completed=done)
            if done >= total:  # ended; the same name again later is a new phase
                live.remove_task(tasks.pop(phase))
                console.print(f"  {phase}: {done}/{total} in {time.perf_counter() - started.pop(phase):.1f} s", highlight=False)

        yield progress
