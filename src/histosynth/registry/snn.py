"""MFT-SNN bundles in the MLflow model registry, with the generator registry's helpers (histosynth.registry).

A version's source is the run's ``snn/`` artifact folder holding ``snn.pt``; the bundle is loaded before a
version is created, so a version that cannot be used is never registered. Tags carry the init
(imagenet / hed / random), the stages and the bundle sha256.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from histosynth.files.atomic import sha256_file
from histosynth.registry import RegistryError, _client, _mlflow_call, model_version_info, set_alias
from histosynth.tracking import ensure_experiment
from histosynth.snn.mft_snn import FILENAME, read_bundle
from histosynth.snn.train import SnnResult

ARTIFACT = "snn"


def _has_bundle(client, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        return any(f.path.endswith(FILENAME) for f in client.list_artifacts(run_id, ARTIFACT))
    except MlflowException:
        return False


def register_snn(
    bundle_path: str | Path | None,
    name: str,
    run_id: str | None = None,
    alias: str | None = None,
    tags: dict[str, str] | None = None,
    tracking_uri: str = "",
    experiment: str = "histosynth-snn",
):
    """Register ``run_id``'s ``snn/snn.pt``, or log ``bundle_path`` (to ``run_id`` or a new run) and register it."""
    from mlflow.exceptions import MlflowException

    if not name or not name.strip():
        raise RegistryError("a registered model name is required", "pass --name NAME")
    client = _client(tracking_uri)
    if run_id is None:
        if bundle_path is None:
            raise RegistryError("nothing to register", "pass --bundle PATH (an snn.pt) or --run-id ID of an snn training run")
        exp_id = ensure_experiment(experiment)
        run_id = _mlflow_call("create run", client.create_run, exp_id, run_name=f"register-{name}", tags={"histosynth.kind": "register"}).info.run_id
        new_run = True
    else:
        try:
            _mlflow_call("get run", client.get_run, run_id)
        except MlflowException as e:
            raise RegistryError(f"run '{run_id}' not found", "pass the run id printed by `histosynth snn train`") from e
        new_run = False
    with tempfile.TemporaryDirectory(prefix="histosynth-snn-register-") as tmp:
        if bundle_path is not None:
            src = Path(bundle_path)
            src = src / FILENAME if src.is_dir() else src
            payload = read_bundle(src)
            staged = Path(tmp) / FILENAME
            shutil.copy2(src, staged)
            _mlflow_call("log bundle", client.log_artifact, run_id, str(staged), ARTIFACT)
        else:
            if not _has_bundle(client, run_id):
                raise RegistryError(f"run '{run_id}' has no {ARTIFACT}/{FILENAME} artifact", "pass --bundle PATH to log one, or the run id of `histosynth snn train`")
            staged = Path(_mlflow_call("download bundle", client.download_artifacts, run_id, f"{ARTIFACT}/{FILENAME}", tmp))
            payload = read_bundle(staged)
        sha = sha256_file(staged)
    if new_run:
        client.set_terminated(run_id, "FINISHED")
    extra = payload.get("extra", {})
    init = extra.get("init", {})
    mv_tags = {
        "histosynth.format": "histosynth.snn/1",
        "init": str(init.get("init", "?")),
        "init_label": str(init.get("label", "")),
        "stages": json.dumps([s.get("stage") for s in extra.get("stages", [])]),
        "image_size": str(payload["spec"].get("image_size")),
        "emb_dim": str(payload["spec"].get("emb_dim")),
        "bundle_sha256": sha,
        **{k: str(v) for k, v in (tags or {}).items()},
    }
    try:
        _mlflow_call("create registered model", client.create_registered_model, name)
    except MlflowException as e:
        if getattr(e, "error_code", "") != "RESOURCE_ALREADY_EXISTS" and "already exists" not in str(e):
            raise
    source = client.get_run(run_id).info.artifact_uri.rstrip("/") + "/" + ARTIFACT
    mv = _mlflow_call("create model version", client.create_model_version, name, source, run_id=run_id, tags=mv_tags)
    if alias:
        set_alias(name, alias, int(mv.version), tracking_uri=tracking_uri)
    return client.get_model_version(name, mv.version)


__all__ = ["register_snn"]


def register_trained(result: SnnResult, name: str) -> SnnResult:
    """Register a finished training run's bundle under ``name`` (the config's ``tracking.register_as``) and record
    the version on ``result.registered``; a no-op for an empty name. Training never registers by itself: the
    registry sits above the SNN package."""
    if name:
        result.registered = model_version_info(register_snn(None, name, run_id=result.run_id, tracking_uri=result.tracking_uri))
    return result
