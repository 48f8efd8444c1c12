"""Typed run configs: one machinery (:mod:`.base`) for the GAN config (:mod:`.gan`, re-exported here: it is
what ``from histosynth.config import ...`` means) and the MFT-SNN config (:mod:`.snn`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from histosynth.config.base import Schema, config_hash, flatten_sections, parse_override, preset_chain, read_preset, resolve_preset
from histosynth.config.gan import (
    GAN,
    AugmentConfig,
    Config,
    DataConfig,
    DDPMConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RLEOConfig,
    TrackingConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    validate,
)
from histosynth.config.snn import SNN, SnnConfig

__all__ = [
    "GAN",
    "SNN",
    "AugmentConfig",
    "Config",
    "DataConfig",
    "DDPMConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RLEOConfig",
    "Schema",
    "SnnConfig",
    "TrackingConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_hash",
    "flatten_sections",
    "load_config",
    "parse_override",
    "preset_chain",
    "read_preset",
    "resolve_preset",
    "resolved_preset",
    "validate",
]


def resolved_preset(preset: str | Path) -> dict[str, Any]:
    """Every setting of a GAN or MFT-SNN preset (``method: mft-snn``): its ``extends:`` chain over the defaults,
    unvalidated. What pipelines carry, so a step needs neither configs/ nor the preset's bases, and the KFP UI
    shows every value it may edit."""
    data = resolve_preset(preset)
    schema: Schema[Any] = SNN if data.get("method") == SnnConfig.method else GAN
    return schema.from_dict(data).to_dict()
