"""MLflow set-up shared by training, registration and evaluation."""

from __future__ import annotations

from histosynth import defaults
from histosynth.errors import HistosynthError


def configure(tracking_uri: str = "") -> str:
    """Point MLflow at ``tracking_uri`` (or the default) with telemetry off; returns the URI in use."""
    defaults.quiet_telemetry()
    import mlflow

    uri = tracking_uri or defaults.mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def ensure_experiment(name: str) -> str:
    """Experiment id for ``name``, created with the project-local artifact root on a local store."""
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":  # MLflow refuses new runs there, and the name stays taken
            raise HistosynthError(
                f"MLflow experiment '{name}' (id {exp.experiment_id}) is deleted: no run can be logged to it",
                f"restore it (`mlflow experiments restore --experiment-id {exp.experiment_id}`) or choose another name (tracking.experiment)",
            )
        return exp.experiment_id
    # a server decides its artifact root (--artifacts-destination); a local store keeps them in HISTOSYNTH_HOME
    uri = mlflow.get_tracking_uri()
    location = None if is_remote(uri) else defaults.mlflow_artifact_location(uri)
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except Exception:  # noqa: BLE001 - created concurrently by another process: use that one
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def is_remote(uri: str) -> bool:
    """True for a tracking server (http/https/databricks), False for a local store (sqlite, file path)."""
    return uri.split(":", 1)[0].lower() in ("http", "https", "databricks")


def check_server(uri: str, timeout: float = 5.0) -> None:
    """For an http(s) tracking URI, fail early and clearly when the server is not answering ``/health``."""
    if not uri.lower().startswith(("http://", "https://")):
        return
    import requests

    from histosynth.errors import ServerError

    url = uri.rstrip("/") + "/health"
    try:
        r = requests.get(url, timeout=timeout)
    except requests.RequestException as e:
        raise ServerError(f"MLflow server at {uri} is unreachable ({e.__class__.__name__})", "start it (mlflow server ...) or set tracking.tracking_uri / MLFLOW_TRACKING_URI to a reachable one") from e
    if r.status_code != 200:
        raise ServerError(f"MLflow server at {uri} answered {r.status_code} on /health", "check the server logs")


def param_value(value) -> str:
    """MLflow params are strings of at most 6000 characters."""
    text = "None" if value is None else (",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value))
    return text if len(text) <= 6000 else text[:5990] + "...(cut)"


def log_params(params: dict) -> None:
    import mlflow

    mlflow.log_params({k: param_value(v) for k, v in params.items()})


def log_data_manifest(store, prefix: str = "data") -> None:
    """Pin the data a run saw: manifest hash as tag and param, counts/classes as params, manifest JSON as artifact."""
    import mlflow

    mlflow.set_tag(f"{prefix}.manifest_hash", store.manifest_hash)
    log_params(
        {
            f"{prefix}.manifest_hash": store.manifest_hash,
            f"{prefix}.count": len(store),
            f"{prefix}.store": str(store.root),
            f"{prefix}.store_classes": store.classes,
        }
    )
    mlflow.log_dict(store.manifest, f"{prefix}/manifest.json")


def run_link(uri: str, experiment_id: str, run_id: str) -> str:
    """Where a person looks at a run: the server's UI page, or the command to open a local store."""
    if uri.lower().startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"mlflow ui --backend-store-uri {uri}  (then experiment {experiment_id}, run {run_id})"
