"""Training checkpoints: everything needed to continue a run exactly, written atomically.

Payload (``torch.load(weights_only=True)``-safe: tensors, numbers, strings, lists, dicts)::

    format        "histosynth.checkpoint/1"
    config        the run's resolved config (dict)
    generator, discriminator, opt_g, opt_d, scaler_g, scaler_d   state dicts
    rng           torch CPU/CUDA, numpy, python states (histosynth.device.rng_state)
    data          the shuffling generator state (BatchSource.state_dict)
    progress      epoch (completed), step (G updates), batch (next batch of the current epoch),
                  perm (the current epoch's shuffle, when stopped mid-epoch), metric sums, history
    run           run id, tracking URI, data manifest hash
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from histosynth.errors import HistosynthError

FORMAT = "histosynth.checkpoint/1"
LAST = "last.pt"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write to a temp file in the same folder, fsync, then ``os.replace``: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint; a missing, truncated or foreign file raises a HistosynthError."""
    path = Path(path)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise HistosynthError(f"checkpoint '{path}' not found", "pass the .pt file under <run out_dir>/checkpoints/ (e.g. last.pt)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise HistosynthError(
            f"checkpoint '{path}' is unreadable ({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''})",
            "the file is truncated or corrupt; resume from an earlier checkpoint or the one logged in MLflow (artifact checkpoints/last.pt)",
        ) from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise HistosynthError(f"'{path}' is not a {FORMAT} checkpoint", "pass a checkpoint written by histosynth train")
    missing = [k for k in ("config", "generator", "discriminator", "opt_g", "opt_d", "rng", "data", "progress") if k not in payload]
    if missing:
        raise HistosynthError(f"checkpoint '{path}' lacks {missing}", "it was written by another version; start a new run")
    return payload
