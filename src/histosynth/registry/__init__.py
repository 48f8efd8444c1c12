"""Generator model registry on MLflow (local SQLite store or an ``mlflow server``).

A registered model version points at a run artifact folder ``generator/`` that holds the bundle
``generator.pt`` (histosynth.gan.bundle). The version's ``source`` is the run's artifact URI + ``/generator``
(``file://...`` on a local store, ``mlflow-artifacts:/...`` through a server): MLflow 3 servers accept a
source only when it lies inside the artifact root of the ``run_id`` given with it, and a plain artifact URI
needs no logged-model entity.

Training code logs the bundle with ``mlflow.log_artifact(path_to_generator.pt, GENERATOR_ARTIFACT)``;
``register_generator(None, name, run_id=...)`` then registers it, or ``register_generator(bundle, name)`` logs a
bundle to a new run first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from histosynth import defaults, tracking
from histosynth.gan.bundle import FILENAME, load_generator
from histosynth.errors import HistosynthError, ServerError
from histosynth.files.atomic import sha256_file

GENERATOR_ARTIFACT = "generator"  # run artifact folder holding generator.pt
REGISTER_RUN_PREFIX = "register-"


class RegistryError(HistosynthError):
    """A model, version, alias or run that the registry does not have."""


def _client(tracking_uri: str = ""):
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars in CLI/pipeline logs
    uri = tracking.configure(tracking_uri)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


def _mlflow_call(what: str, fn, *args, **kwargs):
    """Run an MLflow call; connection failures become ServerError naming the tracking URI."""
    from mlflow.exceptions import MlflowException

    try:
        return fn(*args, **kwargs)
    except MlflowException:
        raise
    except Exception as e:  # noqa: BLE001 - requests/sqlalchemy errors: the store is unreachable
        import mlflow

        raise ServerError(f"{what}: MLflow at {mlflow.get_tracking_uri()} failed ({e.__class__.__name__}: {str(e)[:200]})", "check MLFLOW_TRACKING_URI and that the server runs") from e


def _is_not_found(e: Exception) -> bool:
    code = getattr(e, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE") or "not found" in str(e).lower() or "does not exist" in str(e).lower()


def _bundle_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise RegistryError(f"generator bundle '{path}' not found", "pass the generator.pt written by histosynth train (or its folder)")
    return path


def _run_bundle_artifact(client, run_id: str) -> str | None:
    """Relative artifact path of the run's bundle under generator/, or None."""
    from mlflow.exceptions import MlflowException

    try:
        files = client.list_artifacts(run_id, GENERATOR_ARTIFACT)
    except MlflowException:
        return None
    names = [f.path for f in files if not f.is_dir and f.path.endswith(".pt")]
    if not names:
        return None
    preferred = [n for n in names if n.endswith("/" + FILENAME) or n == FILENAME]
    return (preferred or sorted(names))[0]


def register_generator(
    bundle_path: str | Path | None,
    name: str,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
    description: str = "",
    alias: str | None = None,
    tracking_uri: str = "",
    experiment: str = defaults.EXPERIMENT,
):
    """Register a generator bundle as a new version of ``name``; -> ``mlflow.entities.model_registry.ModelVersion``.

    - ``run_id`` given and its ``generator/`` artifact exists: register that (``bundle_path`` must be None);
    - ``run_id`` given without one: log ``bundle_path`` there first;
    - no ``run_id``: log ``bundle_path`` to a new run ``register-<name>`` in ``experiment``.
    The bundle is loaded once before registering, so a version that cannot be served is never created.
    ``tags`` become model-version tags (plus spec-derived ones: image_size, latent_dim, num_classes, classes,
    bundle_sha256); ``alias`` is set on the new version.
    """
    from mlflow.exceptions import MlflowException

    if not name or not name.strip():
        raise RegistryError("a registered model name is required", "pass --name NAME")
    client = _client(tracking_uri)
    local_bundle: Path | None = _bundle_file(bundle_path) if bundle_path is not None else None

    if run_id:
        try:
            run = _mlflow_call("get run", client.get_run, run_id)
        except MlflowException as e:
            raise RegistryError(f"run '{run_id}' not found in {_uri()}", "pass the run id shown by histosynth train (or in the MLflow UI)") from e
        existing = _run_bundle_artifact(client, run_id)
        if existing and local_bundle is not None:
            raise RegistryError(f"run '{run_id}' already has a generator artifact ({existing})", "register it with --run-id alone, or register the bundle with --bundle alone")
        if not existing and local_bundle is None:
            raise RegistryError(f"run '{run_id}' has no {GENERATOR_ARTIFACT}/{FILENAME} artifact", "pass --bundle PATH to log one to it, or register the run that trained the generator")
    else:
        if local_bundle is None:
            raise RegistryError("nothing to register", "pass --bundle PATH (a generator.pt) or --run-id ID of a training run")
        exp_id = tracking.ensure_experiment(experiment)
        run = _mlflow_call("create run", client.create_run, exp_id, run_name=f"{REGISTER_RUN_PREFIX}{name}", tags={"histosynth.kind": "register"})
        run_id = run.info.run_id

    with tempfile.TemporaryDirectory(prefix="histosynth-register-") as tmp:
        if local_bundle is None:
            existing = _run_bundle_artifact(client, run_id)
            got = Path(_mlflow_call("download bundle", client.download_artifacts, run_id, existing, tmp))
            check_path = got
        else:
            check_path = local_bundle
        _, meta = load_generator(check_path, "cpu")  # raises a clear error for a bad file
        sha = sha256_file(check_path)
        if local_bundle is not None:
            staged = Path(tmp) / "upload" / FILENAME
            staged.parent.mkdir(parents=True)
            shutil.copy2(local_bundle, staged)
            _mlflow_call("log bundle", client.log_artifact, run_id, str(staged), GENERATOR_ARTIFACT)
            if not run.info.end_time and run.data.tags.get("histosynth.kind") == "register":
                spec = meta["spec"]
                for k, v in spec.items():
                    client.log_param(run_id, f"model.{k}", v)
                client.set_terminated(run_id, "FINISHED")

    spec = meta["spec"]
    mv_tags = {
        "histosynth.format": "histosynth.generator/1",
        "arch": str(spec.get("arch", "dcgan")),
        "image_size": str(spec.get("image_size")),
        "latent_dim": str(spec.get("latent_dim", 100)),
        "num_classes": str(spec.get("num_classes", 0)),
        "classes": json.dumps(meta["classes"]),
        "bundle_sha256": sha,
    }
    mv_tags.update({k: str(v) for k, v in (tags or {}).items()})
    try:
        _mlflow_call("create registered model", client.create_registered_model, name)
    except MlflowException as e:
        if getattr(e, "error_code", "") != "RESOURCE_ALREADY_EXISTS" and "already exists" not in str(e):
            raise
    run = client.get_run(run_id)
    source = run.info.artifact_uri.rstrip("/") + "/" + GENERATOR_ARTIFACT
    mv = _mlflow_call("create model version", client.create_model_version, name, source, run_id=run_id, tags=mv_tags, description=description or None)
    if alias:
        set_alias(name, alias, int(mv.version), tracking_uri=tracking_uri)
    return client.get_model_version(name, mv.version)


def set_alias(name: str, alias: str, version: int | str, tracking_uri: str = "") -> None:
    """Point ``name@alias`` at ``version`` (moves the alias if it pointed elsewhere)."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    get_model_version(name, version=int(version), tracking_uri=tracking_uri)  # clear error for unknown name/version
    try:
        _mlflow_call("set alias", client.set_registered_model_alias, name, alias, str(int(version)))
    except MlflowException as e:
        raise RegistryError(f"cannot set alias '{alias}' on {name} v{version}: {e.message}", "aliases are letters, digits, '_' and '-', and not of the form vN") from e


def get_model_version(name: str, version: int | str | None = None, alias: str | None = None, tracking_uri: str = ""):
    """The ModelVersion for ``version``, ``alias`` or (neither) the latest version of ``name``."""
    from mlflow.exceptions import MlflowException

    if version is not None and alias:
        raise RegistryError("pass either a version or an alias, not both")
    client = _client(tracking_uri)
    try:
        _mlflow_call("get registered model", client.get_registered_model, name)
    except MlflowException as e:
        if not _is_not_found(e):
            raise
        names = [m.name for m in client.search_registered_models(max_results=50)]
        raise RegistryError(f"no registered model '{name}' in {_uri()}", f"known models: {', '.join(names) or 'none'}; register one with histosynth register ({defaults.describe_state()})") from e
    try:
        if alias:
            return _mlflow_call("get alias", client.get_model_version_by_alias, name, alias)
        if version is not None:
            return _mlflow_call("get version", client.get_model_version, name, str(int(version)))
    except MlflowException as e:
        if not _is_not_found(e):
            raise
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        what = f"alias '{alias}'" if alias else f"version {version}"
        raise RegistryError(f"model '{name}' has no {what}", f"versions: {', '.join(map(str, versions)) or 'none'}") from e
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise RegistryError(f"model '{name}' has no versions", "register one with histosynth register")
    return max(versions, key=lambda v: int(v.version))


def _cache_dir(tracking_uri: str, name: str, version: str) -> Path:
    key = hashlib.sha256(tracking_uri.encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return defaults.paths().cache / "registry" / key / safe / str(version)


def resolve_generator(name: str, version: int | str | None = None, alias: str | None = None, tracking_uri: str = "", refresh: bool = False) -> Path:
    """Local path of the ``generator.pt`` of ``name`` (version / alias / latest), downloaded once and cached
    under ``$HISTOSYNTH_CACHE/registry/<store>/<name>/<version>/``."""
    mv = get_model_version(name, version=version, alias=alias, tracking_uri=tracking_uri)
    import mlflow

    uri = mlflow.get_tracking_uri()
    cache = _cache_dir(uri, name, mv.version)
    target, stamp = cache / FILENAME, cache / "source.json"
    want = {"source": mv.source, "run_id": mv.run_id, "name": name, "version": str(mv.version)}
    if not refresh and target.is_file() and stamp.is_file():
        try:
            if json.loads(stamp.read_text()) == want:
                return target
        except ValueError:
            pass
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".dl-") as tmp:
        from mlflow.exceptions import MlflowException

        try:
            local = Path(_mlflow_call("download", mlflow.artifacts.download_artifacts, artifact_uri=mv.source, dst_path=tmp))
        except MlflowException as e:
            raise RegistryError(f"cannot download {name} v{mv.version} from {mv.source}: {e.message}", "check that the run's artifacts still exist") from e
        found = local / FILENAME if local.is_dir() else local
        if not found.is_file():
            pts = sorted(local.rglob("*.pt")) if local.is_dir() else []
            if not pts:
                raise RegistryError(f"{name} v{mv.version} ({mv.source}) holds no generator bundle", "register a run or bundle that has generator/generator.pt")
            found = pts[0]
        os.replace(found, target)
    stamp.write_text(json.dumps(want))
    return target


def model_version_info(mv) -> dict[str, Any]:
    """A JSON-friendly summary of a ModelVersion (CLI output, KFP component outputs)."""
    return {
        "name": mv.name,
        "version": int(mv.version),
        "run_id": mv.run_id,
        "source": mv.source,
        "aliases": list(getattr(mv, "aliases", []) or []),
        "tags": dict(mv.tags or {}),
        "status": mv.status,
    }
