"""The generator bundle: one self-describing file (spec + weights + class names) that export, serving
and evaluation load without the training code or its config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from histosynth.errors import HistosynthError
from histosynth.gan.nets import build_generator
from histosynth.files.torchfile import load_payload, save_atomic

FORMAT = "histosynth.generator/1"
FILENAME = "generator.pt"


def save_generator(path: str | Path, generator: torch.nn.Module, spec: dict[str, Any], classes: list[str], extra: dict[str, Any] | None = None) -> Path:
    """Write atomically: a crash mid-write never leaves a truncated bundle behind."""
    path = Path(path)
    if path.suffix != ".pt":
        path = path / FILENAME
    state = {k: v.detach().cpu() for k, v in generator.state_dict().items()}
    return save_atomic(path, {"format": FORMAT, "spec": dict(spec), "classes": list(classes), "state_dict": state, "extra": dict(extra or {})})


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """-> (generator in eval mode, metadata {spec, classes, extra})."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    fix = "pass a generator.pt written by histosynth train (or fetch it again from MLflow: histosynth export --name NAME)"
    payload = load_payload(path, "generator bundle", FORMAT, fix, map_location=device)
    try:
        gen = build_generator(payload["spec"])
        gen.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError, HistosynthError) as e:
        raise HistosynthError(f"generator bundle '{path}' is damaged: its spec and weights do not fit ({e.__class__.__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})", fix) from e
    gen.to(device).eval()
    return gen, {"spec": payload["spec"], "classes": payload["classes"], "extra": payload.get("extra", {})}
