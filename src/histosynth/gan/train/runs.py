"""What the GAN and DDPM trainers share around their loops: the tracking server and data, the MLflow run's
opening records (config, params, data manifest, tags) and its closing ones (generator bundle, final metrics),
and the :class:`TrainResult` that says where everything went.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

import histosynth
from histosynth import defaults, tracking
from histosynth.config import Config, config_hash
from histosynth.data.loader import BatchSource, open_store
from histosynth.data.store import PatchStore
from histosynth.device import Amp, describe
from histosynth.distributed import World
from histosynth.gan import bundle as bundle_mod


@dataclass
class TrainResult:
    run_id: str
    experiment_id: str
    tracking_uri: str
    run_link: str
    out_dir: Path
    bundle: Path
    checkpoint: Path
    samples: Path | None
    loss_curve: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    epochs: int = 0
    wall_s: float = 0.0
    device: str = "cpu"
    amp: str = "off"
    reward_curve: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def default_run_name(cfg: Config) -> str:
    return f"{cfg.method}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def resolve_out_dir(cfg: Config, run_id: str) -> Path:
    if cfg.train.out_dir:
        return Path(cfg.train.out_dir).expanduser().absolute()
    return defaults.paths().runs / run_id


def open_tracking(cfg: Config) -> tuple[str, str]:
    """(tracking URI, experiment id); fails before any data is loaded when the server is down."""
    uri = tracking.configure(cfg.tracking.tracking_uri)
    tracking.check_server(uri)
    return uri, tracking.ensure_experiment(cfg.tracking.experiment)


def open_data(cfg: Config, device: torch.device, world: World = World()) -> tuple[PatchStore, BatchSource]:
    """The store and its batches; this process loads its ``world`` part of each global batch (and, with
    ``HISTOSYNTH_BATCH_TRACE`` set to a folder, records the indices in ``rank<N>.jsonl`` there)."""
    store = open_store(cfg.data.root, cfg.data.split)
    part = world.part(cfg.train.batch_size)
    trace_dir = os.environ.get(defaults.ENV_BATCH_TRACE)
    trace = Path(trace_dir) / f"rank{world.rank}.jsonl" if trace_dir else None
    if trace is not None:
        trace.parent.mkdir(parents=True, exist_ok=True)
    source = BatchSource(
        store, batch_size=cfg.train.batch_size, image_size=cfg.data.image_size, device=device, seed=cfg.train.seed,
        hflip=cfg.data.hflip, vflip=cfg.data.vflip, transpose=cfg.data.transpose, classes=cfg.data.classes, part=part, trace=trace,
        class_balance=cfg.data.class_balance,
    )  # fmt: skip
    return store, source


@dataclass
class Run:
    """An open MLflow run and where its files go."""

    cfg: Config
    uri: str
    experiment_id: str
    run_id: str
    out_dir: Path
    store: PatchStore
    classes: list[str]
    t_start: float


def start_run(cfg: Config, experiment_id: str):
    """``mlflow.start_run`` for this config (nested when a run is active, e.g. a pipeline step's)."""
    import mlflow

    return mlflow.start_run(experiment_id=experiment_id, run_name=cfg.tracking.run_name or default_run_name(cfg), nested=mlflow.active_run() is not None)


def record_start(run: Run, device: torch.device, amp: Amp, ema: bool, params: dict[str, Any], tags: dict[str, str]) -> None:
    """The run's config (file and params, plus ``params``), data manifest and tags (``tags`` on top of the common ones)."""
    import mlflow

    cfg = run.cfg
    run.out_dir.mkdir(parents=True, exist_ok=True)
    (run.out_dir / "config.yaml").write_text(cfg.to_yaml())
    tracking.log_params(cfg.flat())
    tracking.log_params({**params, "config.hash": config_hash(cfg)})
    tracking.log_data_manifest(run.store)
    mlflow.log_text(cfg.to_yaml(), "config.yaml")
    mlflow.set_tags(
        {
            **{f"env.{k}": v for k, v in describe(device, amp).items()},
            "histosynth.version": histosynth.__version__,
            "histosynth.method": cfg.method,
            "histosynth.out_dir": str(run.out_dir),
            "histosynth.classes": ",".join(run.classes),
            "histosynth.generator_weights": f"ema({cfg.train.ema_decay})" if ema else "raw",
            **tags,
        }
    )


def record_end(run: Run, model: torch.nn.Module, spec: dict[str, Any], step: int, epoch: int, last: dict[str, float], extra: dict[str, Any]) -> tuple[Path, float]:
    """Save and log the generator bundle (``extra``: method-specific bundle fields), then the final metrics.
    -> (bundle path, wall seconds of the run)."""
    import mlflow

    cfg = run.cfg
    info = {
        "run_id": run.run_id,
        "tracking_uri": run.uri,
        "epoch": epoch,
        "step": step,
        "data_manifest_hash": run.store.manifest_hash,
        **extra,
        "method": cfg.method,
        "ema_decay": cfg.train.ema_decay,
        "histosynth": histosynth.__version__,
        "config": cfg.to_dict(),
    }
    bundle_path = bundle_mod.save_generator(run.out_dir / "generator", model, spec, run.classes, info)
    log_bundle(bundle_path, spec, run.classes)
    wall = time.perf_counter() - run.t_start
    mlflow.log_metrics({**{f"final/{k}": v for k, v in last.items()}, "train/wall_s": wall, "train/steps": float(step), "train/epochs": float(epoch)}, step=step)
    return bundle_path, wall


def log_bundle(bundle_path: Path, spec: dict[str, Any], classes: list[str]) -> None:
    """Log a saved bundle to the active MLflow run where the registry looks for it (``generator/generator.pt``),
    with its spec beside it, and tag the run with the local path."""
    import mlflow

    mlflow.log_artifact(str(bundle_path), "generator")
    mlflow.log_dict({"spec": spec, "classes": classes, "format": bundle_mod.FORMAT}, "generator/spec.json")
    mlflow.set_tag("histosynth.gan.bundle", str(bundle_path))


def result(run: Run, device: torch.device, amp: Amp, **fields: Any) -> TrainResult:
    return TrainResult(run_id=run.run_id, experiment_id=run.experiment_id, tracking_uri=run.uri, run_link=tracking.run_link(run.uri, run.experiment_id, run.run_id), out_dir=run.out_dir, device=str(device), amp=amp.name, **fields)
