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
    generator_ema, rl_eo, lecam   when the run has them: G's EMA, the RL-EO reward state, the LeCam anchors
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from histosynth.errors import HistosynthError
from histosynth.files.torchfile import load_payload, save_atomic

FORMAT = "histosynth.checkpoint/1"
LAST = "last.pt"
KEYS = ("config", "generator", "discriminator", "opt_g", "opt_d", "rng", "data", "progress")
FIX = "resume from the previous checkpoint (<name>.prev.pt beside it) or the one logged in MLflow (artifact checkpoints/last.pt)"

log = logging.getLogger(__name__)


def previous(path: Path) -> Path:
    """Where the checkpoint that ``path`` replaced is kept: ``last.pt`` -> ``last.prev.pt``."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write atomically and read it back; only then does the current file become ``<name>.prev.pt``.

    So a crash, a full disk or a bad write at any moment leaves at least one complete checkpoint behind."""
    path = Path(path)
    tmp = save_atomic(path.with_name(f".{path.name}.new"), {"format": FORMAT, **payload})
    try:
        _read(tmp, keys=tuple(payload))  # every section written reads back (GAN and DDPM checkpoints alike)
        if path.exists():
            os.replace(path, previous(path))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _read(path: Path, map_location: str | torch.device = "cpu", keys: tuple[str, ...] = KEYS) -> dict[str, Any]:
    payload = load_payload(path, "checkpoint", FORMAT, FIX, map_location)
    missing = [k for k in keys if k not in payload]
    if missing:
        raise HistosynthError(f"checkpoint '{path}' lacks {missing}", "it was written by another version; start a new run")
    return payload


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint (a folder means its ``last.pt``). When it is missing or unreadable and the
    previous one beside it is good, that one is used, with a warning; else a HistosynthError says what to do."""
    path = Path(path)
    if path.is_dir():
        path = path / LAST
    try:
        return _read(path, map_location)
    except HistosynthError as e:
        prev = previous(path)
        if not prev.is_file():
            raise
        try:
            payload = _read(prev, map_location)
        except HistosynthError:
            raise HistosynthError(f"{e.problem}; the previous checkpoint '{prev}' is not readable either", "start a new run, or resume from the checkpoint logged in MLflow (artifact checkpoints/last.pt)") from e
        log.warning("%s; resuming from the previous checkpoint %s (step %s)", e.problem, prev, payload["progress"].get("step"))
        return payload
