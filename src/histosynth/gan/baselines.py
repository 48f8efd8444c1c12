"""The primary paper's Table 1 methods as presets of one harness (same trainer, data, tracking, evaluation).

Every method, the DDPM included (``method: ddpm``, trained by the same ``histosynth train``), is ``configs/<preset>-samples.yaml`` (embedded sample data, CPU-feasible) and
``configs/<preset>-paper.yaml`` (the paper's scale, for a GPU). They differ only in config: architecture
switches (spectral norm, batch norm in D), the loss (``loss.name``, independent of the architecture), the
optimizer and the RL-EO reward. The paper's FIDs (BACH 64x64) are kept for reference, not for comparison
with runs on other data.
"""

from __future__ import annotations

from pathlib import Path

from histosynth import defaults
from histosynth.errors import ConfigError

# Table 1 name -> preset stem.
TABLE1: dict[str, str] = {
    "DCGAN": "dcgan-plain",
    "improved DCGAN": "improved-dcgan",
    "SN-GAN": "sngan",
    "WGAN-GP": "wgan-gp",
    "LSGAN": "lsgan",
    "DDPM": "ddpm",
    "RL-EO": "rl-eo",
}
# Loss-zoo presets beyond Table 1 (the GANetic loss of Akhmedova & Koerber).
LOSS_PRESETS: dict[str, str] = {"GANetic": "ganetic"}
PAPER_FID_BACH64: dict[str, float] = {
    "DCGAN": 57.45,
    "improved DCGAN": 51.26,
    "SN-GAN": 290.08,
    "WGAN-GP": 376.57,
    "LSGAN": 203.53,
    "DDPM": 70.01,
    "RL-EO": 44.04,
}
SCALES = ("samples", "paper")


def preset_path(method: str, scale: str = "samples") -> Path:
    """``preset_path("SN-GAN")`` or ``preset_path("sngan", "paper")`` -> the YAML preset."""
    if scale not in SCALES:
        raise ConfigError(f"unknown preset scale '{scale}'", f"use one of: {', '.join(SCALES)}")
    stem = TABLE1.get(method) or LOSS_PRESETS.get(method) or method
    path = defaults.configs_dir() / f"{stem}-{scale}.yaml"
    if not path.is_file():
        known = ", ".join(sorted({*TABLE1, *LOSS_PRESETS, *TABLE1.values(), *LOSS_PRESETS.values()}))
        raise ConfigError(f"no preset for method '{method}' at scale '{scale}' ({path})", f"use one of: {known}")
    return path
