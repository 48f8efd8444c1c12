"""The .pt files histosynth owns (generator and SNN bundles, checkpoints): atomic writes, and read errors that say
what is wrong with the file in the user's terms instead of PyTorch's internals ("please file an issue")."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from histosynth.errors import HistosynthError
from histosynth.files.atomic import atomic_open


def save_atomic(path: Path, payload: dict[str, Any]) -> Path:
    """``torch.save`` through :func:`histosynth.files.atomic.atomic_open`: a crash never leaves half a file."""
    with atomic_open(path) as f:
        torch.save(payload, f)
    return path


def _why(e: BaseException) -> str:
    if isinstance(e, EOFError) or (isinstance(e, RuntimeError) and "zip archive" in str(e)):
        return "the file is truncated or corrupt (an interrupted write or copy?)"
    if isinstance(e, pickle.UnpicklingError) and "Weights only" in str(e):
        return "it is corrupt, or holds Python objects beyond tensors (not a file histosynth wrote)"
    return "it is not a PyTorch file (corrupt, or another kind of file)"


def load_payload(path: Path, what: str, fmt: str, fix: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a ``{"format": fmt, ...}`` file, or a HistosynthError naming ``what``."""
    if not path.is_file():
        raise HistosynthError(f"{what} '{path}' not found", fix)
    if path.stat().st_size == 0:
        raise HistosynthError(f"{what} '{path}' is empty (an interrupted write or copy?)", fix)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - every unpickling failure means a bad file
        raise HistosynthError(f"'{path}' is not a readable {what}: {_why(e)} [{e.__class__.__name__}]", fix) from e
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise HistosynthError(f"'{path}' is not a {fmt} {what} (found format {found!r})", fix)
    return payload
