"""The RL-EO similarity network a run uses: the trained MFT-SNN named by ``rl_eo.snn``, or one the caller passes.

The factory lives here, beside the trainer that calls it, so :mod:`histosynth.gan.rl_eo` takes the
similarity as an injected :data:`~histosynth.gan.rl_eo.Similarity` and never imports the SNN package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from histosynth.errors import ConfigError, HistosynthError
from histosynth.gan.rl_eo import RLEOReward, Similarity

SNN_FIX = "train one with `histosynth snn train` and set rl_eo.snn=PATH to its output"


def load_similarity(path: str | Path, device: torch.device) -> Similarity:
    """The frozen MFT-SNN at ``path`` as a :data:`Similarity` (``histosynth.snn.load_similarity(...).similarity``)."""
    if not str(path):
        raise ConfigError("rl_eo.enabled=true but rl_eo.snn is empty", SNN_FIX)
    p = Path(path).expanduser()
    if not p.exists():
        raise HistosynthError(f"similarity network rl_eo.snn='{path}' not found", SNN_FIX)
    try:
        from histosynth.snn import load_similarity as _load
    except ImportError as e:
        if (getattr(e, "name", "") or "").startswith("histosynth.snn") or "histosynth.snn" in str(e):
            raise HistosynthError(f"rl_eo.snn is set but the similarity network code is missing ({e})", SNN_FIX) from e
        raise
    # building the network may draw from the global RNG (layer init before the weights are loaded): keep that
    # off the training RNG, so a run's noise and shuffles do not depend on whether it loads an SNN
    with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
        model = _load(p, device)
    return model.similarity


def reward_from_config(cfg: Any, classes: list[str], device: torch.device, similarity: Similarity | None = None) -> RLEOReward | None:
    """The run's :class:`RLEOReward` (None unless ``rl_eo.enabled``); ``similarity`` overrides ``rl_eo.snn``."""
    rl = cfg.rl_eo
    if not rl.enabled:
        return None
    sim = similarity if similarity is not None else load_similarity(rl.snn, device)
    return RLEOReward(sim, rl.weight, mode=rl.mode, classes=classes, device=device, half=rl.half)
