"""Triton model repositories for an exported generator, two variants from one description.

``model_config`` is the single source of truth: it takes the model name, version, tensor specs,
``max_batch_size`` and dynamic-batching settings, and differs between the variants only where Triton needs it:

- ``production``: ``platform: "onnxruntime_onnx"``, ``instance_group [{kind: KIND_GPU}]`` - Triton's own
  onnxruntime backend (NGC ``tritonserver`` image on GPU nodes); the version folder holds ``model.onnx``.
- ``local``: ``backend: "python"`` with a ``model.py`` (``histosynth/serving/triton_model.py``) that runs the
  same ``model.onnx`` with onnxruntime (CPU, or CUDA when available) - for the ``tritonserver`` binary shipped
  in nvidia-pytriton, which has only the python backend.

Both expose the same tensors (see ``histosynth.export.onnx``): inputs ``z`` FP32 [latent_dim] (+ ``class_id`` INT64
[1] when conditional - Triton sees a (B, 1) tensor; reshaped to the ONNX's (B,)), outputs ``images`` FP32
[C, H, W] in [-1, 1] and ``images_uint8`` UINT8 [H, W, C]. Clients ask for ``images_uint8`` (PNG-ready,
4x fewer bytes on the wire); ``images`` is there for float consumers (metrics, further processing).
The class names, latent size and image size travel in the config's ``parameters`` so a client can discover
them from the server alone.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from histosynth.errors import HistosynthError
from histosynth.export.contract import INPUT_CLASS, INPUT_Z, OUTPUT_FLOAT, OUTPUT_UINT8
from histosynth.files.atomic import swap_in, temp_beside
from histosynth.files.outputs import OutputError, check_folder

Variant = Literal["production", "local"]
VARIANTS = ("production", "local")
MODEL_PY = Path(__file__).with_name("triton_model.py")
DEFAULT_MAX_BATCH = 64

_NP_TO_TRITON = {"float32": "TYPE_FP32", "int64": "TYPE_INT64", "uint8": "TYPE_UINT8", "int32": "TYPE_INT32", "float16": "TYPE_FP16"}


@dataclass(frozen=True)
class TensorSpec:
    """One model input/output as Triton sees it: ``dims`` exclude the batch axis."""

    name: str
    data_type: str  # model_config_pb2.DataType name, e.g. "TYPE_FP32"
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None = None  # the model's own shape when it differs from dims (see class_id)


@dataclass(frozen=True)
class DynamicBatching:
    """Triton's dynamic batcher: requests queued up to ``max_queue_delay_us`` are merged up to the preferred sizes."""

    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 2000
    enabled: bool = True


@dataclass(frozen=True)
class GeneratorTensors:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameters: dict[str, str] = field(default_factory=dict)


def sanitize_model_name(name: str) -> str:
    """Triton model names are folder names: keep letters, digits, '.', '_' and '-'."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    if not out:
        raise HistosynthError(f"'{name}' cannot be used as a Triton model name", "use letters, digits, '_', '-' or '.'")
    return out


def generator_tensors(spec: dict[str, Any], classes: list[str]) -> GeneratorTensors:
    """Triton tensor specs + discovery parameters for a generator spec (the ONNX contract of histosynth.export)."""
    size, channels, latent = int(spec["image_size"]), int(spec.get("channels", 3)), int(spec.get("latent_dim", 100))
    num_classes = int(spec.get("num_classes", 0))
    inputs = [TensorSpec(INPUT_Z, "TYPE_FP32", (latent,))]
    if num_classes > 0:
        # The ONNX input is (B,); Triton cannot express a batched rank-1 tensor without a reshape, so clients
        # send (B, 1) and Triton reshapes to the model's (B,).
        inputs.append(TensorSpec(INPUT_CLASS, "TYPE_INT64", (1,), reshape=()))
    outputs = (
        TensorSpec(OUTPUT_UINT8, "TYPE_UINT8", (size, size, channels)),
        TensorSpec(OUTPUT_FLOAT, "TYPE_FP32", (channels, size, size)),
    )
    params = {
        "latent_dim": str(latent),
        "image_size": str(size),
        "channels": str(channels),
        "num_classes": str(num_classes),
        "classes": json.dumps(list(classes)),
        "arch": str(spec.get("arch", "dcgan")),
    }
    return GeneratorTensors(tuple(inputs), outputs, params)


def model_config(
    name: str,
    version: int,
    inputs: tuple[TensorSpec, ...] | list[TensorSpec],
    outputs: tuple[TensorSpec, ...] | list[TensorSpec],
    max_batch_size: int = DEFAULT_MAX_BATCH,
    dynamic_batching: DynamicBatching | None = DynamicBatching(),
    variant: Variant = "local",
    instance_count: int = 1,
    parameters: dict[str, str] | None = None,
    device: str = "cpu",
    intra_op_threads: int = 0,
):
    """-> ``tritonclient.grpc.model_config_pb2.ModelConfig`` for ``variant`` (see the module docstring)."""
    from tritonclient.grpc import model_config_pb2 as mc

    if variant not in VARIANTS:
        raise HistosynthError(f"unknown repository variant '{variant}'", f"use one of: {', '.join(VARIANTS)}")
    if max_batch_size < 1:
        raise HistosynthError(f"max_batch_size must be >= 1, got {max_batch_size}")
    if int(version) < 1:
        raise HistosynthError(f"Triton model versions are integers >= 1, got {version}")
    cfg = mc.ModelConfig(name=name, max_batch_size=int(max_batch_size))
    cfg.version_policy.specific.versions.append(int(version))
    for dst, specs in ((cfg.input, inputs), (cfg.output, outputs)):
        for t in specs:
            entry = dst.add(name=t.name, data_type=mc.DataType.Value(t.data_type), dims=list(t.dims))
            if t.reshape is not None:
                entry.reshape.shape.extend(list(t.reshape))
    if variant == "production":
        cfg.platform = "onnxruntime_onnx"
        cfg.default_model_filename = "model.onnx"
        cfg.instance_group.add(kind=mc.ModelInstanceGroup.Kind.KIND_GPU, count=int(instance_count))
    else:
        cfg.backend = "python"
        cfg.instance_group.add(kind=mc.ModelInstanceGroup.Kind.KIND_CPU, count=int(instance_count))
    if dynamic_batching is not None and dynamic_batching.enabled:
        pref = [b for b in dynamic_batching.preferred_batch_sizes if 0 < b <= max_batch_size]
        cfg.dynamic_batching.preferred_batch_size.extend(sorted(set(pref)))
        cfg.dynamic_batching.max_queue_delay_microseconds = int(dynamic_batching.max_queue_delay_us)
    params = dict(parameters or {})
    if variant == "local":
        params.update({"onnx_file": "model.onnx", "device": device, "intra_op_threads": str(int(intra_op_threads))})
    for key, value in sorted(params.items()):
        cfg.parameters[key].string_value = str(value)
    return cfg


def config_text(cfg) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(cfg)


def parse_config(path: str | Path):
    """Parse a ``config.pbtxt`` into a ``ModelConfig`` (raises on unknown fields)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    return text_format.Parse(Path(path).read_text(), mc.ModelConfig())


def build_repository(
    onnx_path: str | Path,
    repo_dir: str | Path,
    name: str,
    version: int = 1,
    variant: Variant = "local",
    max_batch_size: int = DEFAULT_MAX_BATCH,
    dynamic_batching: DynamicBatching | None = DynamicBatching(),
    instance_count: int = 1,
    device: str = "cpu",
    intra_op_threads: int = 0,
    extra_parameters: dict[str, str] | None = None,
) -> Path:
    """Write ``<repo_dir>/<name>/{config.pbtxt, <version>/model.onnx[, <version>/model.py]}``; -> the model folder.

    The model folder is replaced as a whole (one served version per model); other models in ``repo_dir`` are
    kept, so several generators can share one repository.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise HistosynthError(f"ONNX file '{onnx_path}' not found", "export it first: histosynth export --name NAME --version N")
    from histosynth.export.onnx import onnx_metadata

    name = sanitize_model_name(name)
    meta = onnx_metadata(onnx_path)
    tensors = generator_tensors(meta["spec"], meta.get("classes", []))
    params = dict(tensors.parameters)
    params.update(extra_parameters or {})
    cfg = model_config(
        name,
        int(version),
        tensors.inputs,
        tensors.outputs,
        max_batch_size=max_batch_size,
        dynamic_batching=dynamic_batching,
        variant=variant,
        instance_count=instance_count,
        parameters=params,
        device=device,
        intra_op_threads=intra_op_threads,
    )
    repo_dir = check_folder(repo_dir, "--repo")
    if (repo_dir / name).exists() and not (repo_dir / name / "config.pbtxt").is_file():
        raise OutputError(f"--repo '{repo_dir}' already holds '{name}', which is not a Triton model folder (no config.pbtxt)", "pick another --repo (or model name); it was left untouched")
    target = repo_dir / name
    staging = temp_beside(target)
    try:
        vdir = staging / str(int(version))
        vdir.mkdir()
        shutil.copy2(onnx_path, vdir / "model.onnx")
        if variant == "local":
            shutil.copy2(MODEL_PY, vdir / "model.py")
        (staging / "config.pbtxt").write_text(config_text(cfg))
        swap_in(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
