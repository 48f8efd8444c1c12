"""The generator bundle: one self-describing file (spec + weights + class names) that export, serving
and evaluation load without the training code or its config."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from histosynth.errors import HistosynthError
from histosynth.nets import build_generator

FORMAT = "histosynth.generator/1"
FILENAME = "generator.pt"


def save_generator(path: str | Path, generator: torch.nn.Module, spec: dict[str, Any], classes: list[str], extra: dict[str, Any] | None = None) -> Path:
    """Write atomically: a crash mid-write never leaves a truncated bundle behind."""
    path = Path(path)
    if path.suffix != ".pt":
        path = path / FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in generator.state_dict().items()}
    payload = {"format": FORMAT, "spec": dict(spec), "classes": list(classes), "state_dict": state, "extra": dict(extra or {})}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """-> (generator in eval mode, metadata {spec, classes, extra})."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise HistosynthError(f"generator bundle '{path}' not found", "train a model first (histosynth train) or pass the path of a generator.pt")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise HistosynthError(f"'{path}' is not a readable generator bundle ({e.__class__.__name__}: {e})", "re-export it with histosynth train/register") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise HistosynthError(f"'{path}' is not a {FORMAT} bundle", "pass a generator.pt written by histosynth")
    gen = build_generator(payload["spec"])
    gen.load_state_dict(payload["state_dict"])
    gen.to(device).eval()
    return gen, {"spec": payload["spec"], "classes": payload["classes"], "extra": payload.get("extra", {})}
