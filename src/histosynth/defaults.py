"""The one place for defaults: paths, URIs and environment variables shared by the CLI, API and pipelines.

Values are read from the environment at call time, so tests and pipelines can point a process at another
state folder without reloading modules.

State (``.histosynth/``: MLflow store, runs) and data (``data/``) belong to the project, not to the working
directory: a command run from a subfolder finds the project root by walking up to the nearest folder whose
``dvc.yaml`` or ``pyproject.toml`` is a histosynth project's. ``HISTOSYNTH_HOME``/``HISTOSYNTH_DATA`` win over
that. Outside any project the state goes to ``~/.histosynth`` (one store per user, never a stray folder per
directory) and data to ``./data``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

ENV_HOME = "HISTOSYNTH_HOME"  # project-local state: MLflow store, DVC remote, runs
ENV_CACHE = "HISTOSYNTH_CACHE"  # downloads: wheels, datasets, weights
ENV_DATA = "HISTOSYNTH_DATA"  # versioned data folder (DVC outputs)
ENV_OFFLINE = "HISTOSYNTH_OFFLINE"  # "1": never touch the network, use local files only
ENV_SYNTH_MAX = "HISTOSYNTH_SYNTH_MAX"  # most images one `histosynth synth` may request
ENV_DIST_BACKEND = "HISTOSYNTH_DIST_BACKEND"  # under torchrun: auto (nccl on CUDA, gloo on CPU) | nccl | gloo
ENV_BATCH_TRACE = "HISTOSYNTH_BATCH_TRACE"  # a folder: each training process writes the patch indices it loads

log = logging.getLogger(__name__)
_announced: set[Path] = set()  # state folders already named in the log

SEED = 0
IMAGE_SIZE = 64
LATENT_DIM = 100
EXPERIMENT = "histosynth"
# `synth` holds every image in memory before writing: 50k 64x64 RGB images are ~0.6 GB (256 px: ~10 GB).
SYNTH_MAX = 50_000


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


USER_HOME = "~/.histosynth"  # state outside any project


def _is_project(folder: Path) -> bool:
    try:
        if (folder / "dvc.yaml").is_file() and "histosynth" in (folder / "dvc.yaml").read_text(errors="replace"):
            return True
        return (folder / "pyproject.toml").is_file() and 'name = "histosynth"' in (folder / "pyproject.toml").read_text(errors="replace")
    except OSError:
        return False


def project_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the working directory) that is a histosynth project."""
    here = (start or Path.cwd()).absolute()
    return next((d for d in (here, *here.parents) if _is_project(d)), None)


def paths() -> Paths:
    """Resolve state, cache and data folders: the environment, else the project root, else the user defaults."""
    root = project_root()
    base = root or Path.cwd()
    home = Path(os.environ.get(ENV_HOME) or (base / ".histosynth" if root else USER_HOME)).expanduser()
    cache = Path(os.environ.get(ENV_CACHE, Path("~/.cache/histosynth").expanduser())).expanduser()
    data = Path(os.environ.get(ENV_DATA) or base / "data").expanduser()
    return Paths(home=home.absolute(), cache=cache.absolute(), data=data.absolute())


def describe_state() -> str:
    """One line saying which state folder is in use and why (for logs, --dry-run and error messages)."""
    home = paths().home
    if os.environ.get(ENV_HOME):
        return f"state {home} (from ${ENV_HOME})"
    root = project_root()
    if root:
        return f"state {home} (project {root})"
    return f"state {home} (no histosynth project at or above {Path.cwd()}; set ${ENV_HOME} or run inside a project)"


def synth_max() -> int:
    """The most images one ``synth`` call may request: ``$HISTOSYNTH_SYNTH_MAX``, else ``SYNTH_MAX``."""
    from histosynth.errors import ConfigError

    raw = os.environ.get(ENV_SYNTH_MAX, "")
    if not raw:
        return SYNTH_MAX
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{ENV_SYNTH_MAX}={raw!r} is not a positive whole number", f"set it to e.g. {SYNTH_MAX}, or unset it")
    return value


def offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "") not in ("", "0", "false", "False")


def mlflow_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite store in the project's state folder (logged once)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    p = paths()
    p.home.mkdir(parents=True, exist_ok=True)
    if p.home not in _announced:
        _announced.add(p.home)
        log.info("%s", describe_state())
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


def configs_dir() -> Path:
    """``configs/`` (the YAML presets) of the source checkout: presets are not packaged (images copy them)."""
    return Path(__file__).resolve().parents[2] / "configs"
