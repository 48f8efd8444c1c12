"""MFT-SNN pipeline stages as plain functions over paths and strings (the KFP components in components/snn.py
wrap these), so the CLI, ``kfp.local`` and a cluster run the same code."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from histosynth.config.snn import SnnConfig, load_snn_config
from histosynth.snn.mft_snn import FILENAME


def _config(config_yaml: str, overrides: list[str]) -> SnnConfig:
    if not config_yaml.strip():
        return load_snn_config(None, overrides)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(config_yaml)
    try:
        return load_snn_config(f.name, overrides)
    finally:
        Path(f.name).unlink()


def pairs_stage(splits_dir: str | Path, out_dir: str | Path, config_yaml: str = "", overrides: list[str] | None = None) -> dict[str, Any]:
    """Build the pairs folder from ``splits_dir`` into ``out_dir``; -> counts per split and kind."""
    from histosynth.snn.pairs import build_pairs

    cfg = _config(config_yaml, list(overrides or []))
    m = build_pairs(cfg.pairs, root=str(Path(splits_dir).absolute()), out=str(out_dir))
    return {s: {"patch": e["patch"]["count"], "stage1": e["stage1"]["count"], "mosaics": e["mosaics"]["count"]} for s, e in m["splits"].items()}


def train_snn_stage(
    pairs_dir: str | Path,
    splits_dir: str | Path,
    config_yaml: str,
    overrides: list[str],
    stage: int | str,
    init_bundle: str | Path,
    tracking_uri: str,
    bundle_out: str | Path,
) -> dict[str, Any]:
    """Train stage 1, 2 (from ``init_bundle``: an snn.pt or its folder) or 'single'; copy snn.pt to ``bundle_out``."""
    from histosynth.snn.train import train_snn

    init = Path(init_bundle) if init_bundle else None
    if init is not None and init.is_dir():
        init = init / FILENAME
    cfg = _config(
        config_yaml,
        [*overrides, f"train.pairs={Path(pairs_dir).absolute()}", f"train.splits={Path(splits_dir).absolute()}", f"train.stage={stage}", f"train.init_from={init or ''}"],
    )
    if tracking_uri:
        cfg.tracking.tracking_uri = tracking_uri
    result = train_snn(cfg, progress=False)
    dest = Path(bundle_out)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(result.bundle, dest / FILENAME)
    return result.to_dict()
