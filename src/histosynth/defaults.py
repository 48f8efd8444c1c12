"""The one place for defaults: paths, URIs and environment variables shared by the CLI, API and pipelines.

Values are read from the environment at call time, so tests and pipelines can point a process at another
state folder without reloading modules.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_HOME = "HISTOSYNTH_HOME"  # project-local state: MLflow store, DVC remote, runs
ENV_CACHE = "HISTOSYNTH_CACHE"  # downloads: wheels, datasets, weights
ENV_DATA = "HISTOSYNTH_DATA"  # versioned data folder (DVC outputs)
ENV_OFFLINE = "HISTOSYNTH_OFFLINE"  # "1": never touch the network, use local files only

SEED = 0
IMAGE_SIZE = 64
LATENT_DIM = 100
EXPERIMENT = "histosynth"


@dataclass(frozen=True)
class Paths:
    home: Path
    cache: Path
    data: Path

    @property
    def mlflow_db(self) -> Path:
        return self.home / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def dvc_remote(self) -> Path:
        return self.home / "dvc-remote"

    @property
    def raw(self) -> Path:
        return self.data / "raw"

    @property
    def patches(self) -> Path:
        return self.data / "patches"

    @property
    def splits(self) -> Path:
        return self.data / "splits"


def paths() -> Paths:
    """Resolve state, cache and data folders from the environment (relative to the working directory)."""
    home = Path(os.environ.get(ENV_HOME, ".histosynth")).expanduser()
    cache = Path(os.environ.get(ENV_CACHE, Path("~/.cache/histosynth").expanduser())).expanduser()
    data = Path(os.environ.get(ENV_DATA, "data")).expanduser()
    return Paths(home=home.absolute(), cache=cache.absolute(), data=data.absolute())


def offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "") not in ("", "0", "false", "False")


def mlflow_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite store in the project-local state folder."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    p = paths()
    p.home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{p.mlflow_db}"


def mlflow_artifact_location(tracking_uri: str | None = None) -> str | None:
    """Artifact root for experiments created on a local store (SQLite or file): the project-local folder.

    Decided by the URI's scheme, not by whether ``MLFLOW_TRACKING_URI`` is set: MLflow's own
    ``set_tracking_uri`` sets that variable. For a tracking server it returns None (the server decides).
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or mlflow_tracking_uri()
    if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
        return paths().mlflow_artifacts.as_uri()
    return None


def quiet_telemetry() -> None:
    """No outbound analytics from MLflow or DVC (this platform runs on closed networks)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
