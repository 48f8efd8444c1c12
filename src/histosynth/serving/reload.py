"""Hot model swaps on a running Triton (explicit model-control mode): what makes promotion change what is served.

``reload_model`` resolves ``name`` at a version or alias (``champion``), rebuilds that model's folder in the
repository the server reads (one version per model: the new version folder replaces the old), and asks the server
to ``load`` it through the HTTP API. Triton then loads the new version and unloads the old one, without a restart
and without dropping the other models. ``watch_alias`` polls the registry and reloads whenever the alias moves
(`histosynth serve --watch SECONDS`); ``histosynth serve --reload`` does one swap against a running server.

On Kubernetes the repository lives in MinIO (s3://.../triton-models/production): build it there with
``--variant production`` and point ``url`` at the Triton Service.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

from histosynth.errors import ServerError

log = logging.getLogger("histosynth.serving")


def _client(url: str):
    import tritonclient.http as th

    return th.InferenceServerClient(url, connection_timeout=10.0, network_timeout=300.0)


def served_versions(url: str, model: str) -> list[str]:
    """Versions of ``model`` the server at ``url`` has READY ([] when it serves none)."""
    from tritonclient.utils import InferenceServerException

    try:
        index = _client(url).get_model_repository_index()
    except InferenceServerException as e:
        raise ServerError(f"no Triton server answers at {url} ({e.message()})", "start one with histosynth serve") from e
    except Exception as e:  # noqa: BLE001 - connection refused etc.
        raise ServerError(f"no Triton server answers at {url} ({e.__class__.__name__})", "start one with histosynth serve") from e
    return sorted((m.get("version", "") for m in index if m.get("name") == model and m.get("state") == "READY"), key=lambda v: int(v or 0))


def reload_model(
    url: str,
    repo_dir: str | Path,
    name: str,
    version: int | None = None,
    alias: str | None = None,
    model_name: str | None = None,
    timeout: float = 120.0,
    **build: Any,
) -> dict[str, Any]:
    """Rebuild ``name`` (version/alias) into ``repo_dir`` and load it on the server at ``url``.

    -> {model_name, version, previous (versions served before), served (after), changed}. ``build`` goes to
    :func:`histosynth.serving.prepare_model` (variant, max_batch_size, dynamic_batching, device, ...).
    """
    from tritonclient.utils import InferenceServerException

    from histosynth.serving import prepare_model, sanitize_model_name

    served_name = sanitize_model_name(model_name or name)
    previous = served_versions(url, served_name)
    res = prepare_model(repo_dir, name=name, version=version, alias=alias, model_name=served_name, **build)
    want = str(res["version"])
    client = _client(url)
    try:
        client.load_model(served_name)
    except InferenceServerException as e:
        raise ServerError(f"Triton at {url} failed to load {served_name} v{want}: {e.message()}", "check the server log; the server must run with --model-control-mode=explicit") from e
    deadline = time.monotonic() + timeout
    while not client.is_model_ready(served_name, want):
        if time.monotonic() > deadline:
            raise ServerError(f"{served_name} v{want} was not ready on {url} after {timeout:.0f} s", "check the server log")
        time.sleep(0.2)
    served = served_versions(url, served_name)
    return {"model_name": served_name, "version": int(want), "previous": previous, "served": served, "changed": previous != [want], "onnx_path": res["onnx_path"]}


def watch_alias(
    url: str,
    repo_dir: str | Path,
    name: str,
    alias: str,
    interval: float = 30.0,
    should_stop: Callable[[], bool] = lambda: False,
    on_reload: Callable[[dict[str, Any]], None] | None = None,
    **build: Any,
) -> None:
    """Poll ``name@alias`` every ``interval`` s; reload when it points at another version than the one served.

    Registry or server hiccups are logged and retried at the next poll (a watcher must outlive them).
    """
    from histosynth import registry
    from histosynth.errors import HistosynthError
    from histosynth.serving import sanitize_model_name

    served_name = sanitize_model_name(build.pop("model_name", None) or name)
    while not should_stop():
        try:
            current = str(registry.get_model_version(name, alias=alias).version)
            if served_versions(url, served_name) != [current]:
                info = reload_model(url, repo_dir, name, alias=alias, model_name=served_name, **build)
                log.info("%s@%s -> v%s now served (was %s)", name, alias, info["version"], info["previous"])
                if on_reload:
                    on_reload(info)
        except HistosynthError as e:
            log.warning("watch %s@%s: %s", name, alias, e.problem)
        end = time.monotonic() + interval
        while time.monotonic() < end and not should_stop():
            time.sleep(min(0.2, interval))
