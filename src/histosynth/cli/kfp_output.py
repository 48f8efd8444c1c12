"""What a kfp.local run shows: each step's own output and kfp.local's task start/finish lines. The executor's
INFO chatter (with the whole executor-input JSON of every step) and the warnings about cluster-only settings
(accelerator, resources, node selectors) that the local runner ignores go to the debug log instead: shown with
``histosynth pipeline run --verbose`` or ``HISTOSYNTH_LOG=debug``."""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

log = logging.getLogger("histosynth.pipeline")
EXECUTOR_INFO = "[KFP Executor "  # kfp.dsl.executor_main's log format: '[KFP Executor <time> INFO]: ...'
# kfp.local's warnings about what only a cluster uses: task resources/accelerators, set-after-run calls, images
LOCAL_ONLY = ("no effect in the current local runner", "is not used by the current local runner", "non-Python base image")


def configure_log(verbose: bool) -> None:
    """Debug lines to stderr with ``verbose`` or HISTOSYNTH_LOG=debug; otherwise only warnings."""
    debug = verbose or os.environ.get("HISTOSYNTH_LOG", "").lower() == "debug"
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("debug: %(message)s"))
        log.addHandler(handler)
        log.propagate = False  # kfp.local swaps the root logger's handlers while a task runs
    log.setLevel(logging.DEBUG if debug else logging.WARNING)


class StepOutput(io.TextIOBase):
    """A stdout that passes lines through to ``target``, except the executor's INFO lines and JSON dumps."""

    def __init__(self, target: TextIO):
        self.target = target
        self.pending = ""
        self.dump_end: str | None = None  # the line closing the JSON dump in progress

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self._line(line)
        return len(text)

    def _line(self, line: str) -> None:
        body = line.lstrip()  # kfp.local indents step output
        if self.dump_end is not None or (body.startswith(EXECUTOR_INFO) and " INFO]: " in body):
            log.debug(line)
            if body.endswith("Got executor_input:"):
                self.dump_end = line[: len(line) - len(body)] + "}"  # json.dumps(indent=4) closes at the line's indent
            elif line == self.dump_end:
                self.dump_end = None
            return
        self.target.write(line + "\n")

    def flush(self) -> None:
        if self.pending:
            self._line(self.pending)
            self.pending = ""
        self.target.flush()


@contextmanager
def quiet_local_run() -> Iterator[None]:
    """While a kfp.local pipeline runs in this process: filter stdout, send local-only warnings to the debug log."""
    show = warnings.showwarning

    def to_debug(message, category, filename, lineno, file=None, line=None):
        if any(s in str(message) for s in LOCAL_ONLY):
            log.debug("kfp.local: %s", message)
        else:
            show(message, category, filename, lineno, file, line)

    stdout = sys.stdout
    sys.stdout = StepOutput(stdout)
    try:
        with warnings.catch_warnings():
            for text in LOCAL_ONLY:  # every step's ignored settings reach the debug log, not just the first
                warnings.filterwarnings("always", message=f".*{re.escape(text)}")
            warnings.showwarning = to_debug
            yield
    finally:
        sys.stdout.flush()
        sys.stdout = stdout
