"""Where commands write: replace only what histosynth wrote before, never a user's files.

An output folder must be absent, empty, or recognisably ours (its marker file, written by histosynth, and only
names this tool writes there); anything else is refused unless the user passes ``--force``. An output file is
overwritten only when it is ours or with ``--force``. A file is never used as a folder (or the reverse), even
with ``--force``: that is always a typo, and following it would destroy the file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from fnmatch import fnmatch
from pathlib import Path

from histosynth.errors import HistosynthError


class OutputError(HistosynthError):
    """An output path that holds something histosynth did not write (or a file where a folder belongs)."""


def written_by_us(path: Path) -> bool:
    """A JSON file whose ``format`` starts with ``histosynth.`` (or that records ``histosynth_version``)."""
    try:
        body = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(body, dict) and (str(body.get("format", "")).startswith("histosynth.") or "histosynth_version" in body)


def _nearest_existing(paths: Iterable[Path]) -> Path | None:
    return next((p for p in paths if p.exists()), None)


def check_folder(path: str | Path, flag: str = "--out") -> Path:
    """Raise if ``path`` or a folder above it is a file (for outputs that only add files to a folder)."""
    path = Path(path)
    found = _nearest_existing((path, *path.parents))
    if found is not None and not found.is_dir():
        raise OutputError(f"{flag} '{path}': '{found}' is a file, not a folder (it was left untouched)", "pass a folder path: a new one, or one histosynth wrote before")
    return path


def check_dir(
    path: str | Path,
    *,
    marker: str,
    names: Iterable[str] = (),
    force: bool = False,
    flag: str = "--out",
    ours: Callable[[Path], bool] = written_by_us,
) -> Path:
    """Allow writing the folder ``path``, or raise: ``marker`` (checked by ``ours``) identifies our output and
    ``names`` (glob patterns) are the other entries we write there."""
    path = check_folder(path, flag)
    if force or not path.is_dir():
        return path
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        return path
    if marker in entries and ours(path / marker):
        foreign = [n for n in entries if not any(fnmatch(n, pat) for pat in (marker, *names))]
        if not foreign:
            return path
        raise OutputError(
            f"{flag} '{path}' holds files histosynth did not write: {', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}",
            "move them elsewhere, pick another folder, or pass --force to replace the folder and everything in it",
        )
    raise OutputError(
        f"{flag} '{path}' is not empty and was not written by histosynth (it holds {', '.join(entries[:3])}{' ...' if len(entries) > 3 else ''})",
        "pick a new or empty folder, or pass --force to replace its contents",
    )


def check_file(path: str | Path, *, ours: Callable[[Path], bool] = written_by_us, force: bool = False, flag: str = "--out") -> Path:
    """Allow writing the file ``path``, or raise: an existing file must be ``ours`` (or ``force``)."""
    path = Path(path)
    found = _nearest_existing(path.parents)
    if found is not None and not found.is_dir():
        raise OutputError(f"{flag} '{path}': '{found}' is a file, not a folder (it was left untouched)", "pass a path inside a folder")
    if path.is_dir():
        raise OutputError(f"{flag} '{path}' is a folder, not a file", "pass a file path")
    if path.exists() and not force and not ours(path):
        raise OutputError(f"{flag} '{path}' exists and was not written by histosynth (it was left untouched)", "pick another file name, or pass --force to overwrite it")
    return path

