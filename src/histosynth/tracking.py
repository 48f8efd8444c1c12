"""MLflow set-up shared by training, registration and evaluation."""

from __future__ import annotations

from histosynth import defaults


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
        return exp.experiment_id
    return mlflow.create_experiment(name, artifact_location=defaults.mlflow_artifact_location())
