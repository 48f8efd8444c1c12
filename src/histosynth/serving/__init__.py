"""Serving generators from NVIDIA Triton: model repositories, a server launcher and a client.

- ``repository``: ``model_config`` / ``build_repository`` (production ``onnxruntime_onnx`` and local python-backend
  variants from one description);
- ``server``: ``TritonServer``, a context manager around a real ``tritonserver`` process;
- ``client``: ``GeneratorClient``, ``synthesize``, ``write_pngs``, ``latents``.

``prepare_model`` ties them to the registry: resolve a registered generator, export it (cached), build a repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from histosynth.serving.client import GeneratorClient, ModelInfo, SynthResult, latents, synthesize, write_pngs
from histosynth.serving.repository import (
    DEFAULT_MAX_BATCH,
    DynamicBatching,
    TensorSpec,
    build_repository,
    generator_tensors,
    model_config,
    parse_config,
    sanitize_model_name,
)
from histosynth.serving.server import TritonServer

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DynamicBatching",
    "GeneratorClient",
    "ModelInfo",
    "SynthResult",
    "TensorSpec",
    "TritonServer",
    "build_repository",
    "generator_tensors",
    "latents",
    "model_config",
    "parse_config",
    "prepare_model",
    "sanitize_model_name",
    "synthesize",
    "write_pngs",
]


def prepare_model(
    repo_dir: str | Path,
    name: str | None = None,
    version: int | None = None,
    alias: str | None = None,
    bundle: str | Path | None = None,
    model_name: str | None = None,
    variant: str = "local",
    max_batch_size: int = DEFAULT_MAX_BATCH,
    dynamic_batching: DynamicBatching | None = DynamicBatching(),
    instance_count: int = 1,
    device: str = "cpu",
) -> dict[str, Any]:
    """Registered model (``name`` + version/alias) or a ``bundle`` -> exported ONNX (cached) -> repository entry.

    Returns {model_dir, model_name, version, onnx_path, report}.
    """
    from histosynth.export.onnx import export_bundle, export_registered

    if bundle is not None:
        res = export_bundle(bundle)
        served_name, served_version = model_name or "generator", 1
    elif name:
        res = export_registered(name, version=version, alias=alias, log_to_run=True)
        served_name, served_version = model_name or name, int(res["version"])
    else:
        from histosynth.errors import HistosynthError

        raise HistosynthError("nothing to serve", "pass --name NAME (a registered model) or --bundle PATH, or --repo DIR of an existing repository")
    model_dir = build_repository(
        res["onnx_path"],
        repo_dir,
        served_name,
        served_version,
        variant=variant,  # type: ignore[arg-type]
        max_batch_size=max_batch_size,
        dynamic_batching=dynamic_batching,
        instance_count=instance_count,
        device=device,
    )
    return {"model_dir": model_dir, "model_name": model_dir.name, "version": served_version, "onnx_path": res["onnx_path"], "report": res["report"]}
