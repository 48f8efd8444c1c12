"""Atomic file writes, folder swaps and file hashes: the one place every module writes and checks files through.

A file is written to a hidden temp file in its destination folder (same file system, so the final
``os.replace`` is atomic), fsynced, made readable like a normally created file (0644) and only then renamed over
the destination: a crash, a full disk or a failed check never leaves half a file, and a reader sees the old
file, the new one or none. A folder is built beside its destination and swapped in whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from histosynth.errors import DataError

CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temp file name beside ``path`` for writers that take a name (exporters, downloaders); it replaces
    ``path`` only when the block finishes without an exception, and is removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide outputs from other users and containers
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(path: str | Path) -> Iterator[IO[bytes]]:
    """A binary file object whose content replaces ``path`` when the block succeeds (see the module doc)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_open(path) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> Path:
    """Indented, key-sorted JSON with a final newline (stable diffs, reproducible bytes)."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def copy_verified(src: IO[bytes], dest: Path, sha256: str, what: str) -> Path:
    """Copy the stream ``src`` to ``dest``, hashing while copying; ``dest`` appears only when the sha256 matches."""
    h = hashlib.sha256()
    with atomic_open(dest) as out:
        while block := src.read(CHUNK):
            h.update(block)
            out.write(block)
        if h.hexdigest() != sha256:
            raise DataError(f"{what} has sha256 {h.hexdigest()}, expected {sha256}", "the file is corrupt or not the pinned one; delete it and fetch again")
    return dest


def temp_beside(out: Path) -> Path:
    """A fresh hidden folder next to ``out``: same file system, so ``swap_in`` is an atomic rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))


def swap_in(tmp: Path, out: Path) -> None:
    """Replace the folder ``out`` with the complete folder ``tmp``; the old one is removed only afterwards."""
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
