"""Export a generator bundle to ONNX, with a parity check against PyTorch before the file is published.

The ONNX graph is the serving contract shared by every Triton variant (tensor names: ``histosynth.export.contract``):

- inputs: ``z`` float32 (B, latent_dim); ``class_id`` int64 (B,) only when the generator is conditional;
- outputs: ``images`` float32 (B, C, H, W) in [-1, 1] (the generator's own output) and ``images_uint8``
  uint8 (B, H, W, C), the same images post-processed to PNG-ready pixels
  (``round((x + 1) * 127.5)`` clamped to [0, 255]). Post-processing lives in the graph so that the
  production (``onnxruntime_onnx``) and local (python backend) repositories return identical bytes.

B is a dynamic axis. Bundle metadata (spec, class names) is written into the ONNX ``metadata_props``
under ``histosynth.*`` keys, so a model repository can be built from the ONNX file alone.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from histosynth.gan.bundle import load_generator
from histosynth.errors import HistosynthError
from histosynth.files.atomic import atomic_path, sha256_file, write_json
from histosynth.files.outputs import check_dir
from histosynth.export.contract import INPUT_CLASS, INPUT_Z, OUTPUT_FLOAT, OUTPUT_UINT8

META_PREFIX = "histosynth."


class ExportError(HistosynthError):
    """The ONNX export failed or did not reproduce the PyTorch generator."""


class _Served(torch.nn.Module):
    """G plus on-graph post-processing; ``forward(z[, class_id]) -> (images, images_uint8)``."""

    def __init__(self, generator: torch.nn.Module, conditional: bool):
        super().__init__()
        self.g = generator
        self.conditional = conditional

    def forward(self, z: torch.Tensor, class_id: torch.Tensor | None = None):
        x = self.g(z, class_id) if self.conditional else self.g(z)
        u8 = ((x + 1.0) * 127.5).round().clamp(0.0, 255.0).to(torch.uint8).permute(0, 2, 3, 1)
        return x, u8


def onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The ``histosynth.*`` metadata of an exported ONNX file, JSON-decoded (spec, classes, ...)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    out: dict[str, Any] = {}
    for prop in model.metadata_props:
        if prop.key.startswith(META_PREFIX):
            out[prop.key[len(META_PREFIX) :]] = json.loads(prop.value)
    if "spec" not in out:
        raise ExportError(f"'{path}' has no histosynth metadata", "export it with histosynth export (or histosynth.export.onnx.export_onnx)")
    return out


def _example_inputs(spec: dict[str, Any], batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {INPUT_Z: rng.standard_normal((batch, spec["latent_dim"]), dtype=np.float32)}
    if spec.get("num_classes", 0) > 0:
        feeds[INPUT_CLASS] = (np.arange(batch, dtype=np.int64) % spec["num_classes"]).astype(np.int64)
    return feeds


def check_parity(onnx_path: str | Path, generator: torch.nn.Module, spec: dict[str, Any], batch: int, seed: int = 0) -> dict[str, float]:
    """Run PyTorch and onnxruntime (CPU) on the same inputs; -> max abs diffs of both outputs."""
    import onnxruntime as ort

    conditional = spec.get("num_classes", 0) > 0
    feeds = _example_inputs(spec, batch, seed)
    wrapped = _Served(generator, conditional).eval()
    with torch.no_grad():
        args = [torch.from_numpy(feeds[INPUT_Z])]
        if conditional:
            args.append(torch.from_numpy(feeds[INPUT_CLASS]))
        ref_f, ref_u = (t.numpy() for t in wrapped(*args))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    got_f, got_u = sess.run([OUTPUT_FLOAT, OUTPUT_UINT8], feeds)
    if got_f.shape != ref_f.shape or got_u.shape != ref_u.shape or got_u.dtype != np.uint8:
        raise ExportError(f"ONNX output shapes {got_f.shape}/{got_u.shape} differ from PyTorch {ref_f.shape}/{ref_u.shape} at batch {batch}")
    return {
        "max_abs_diff": float(np.abs(got_f.astype(np.float64) - ref_f.astype(np.float64)).max()),
        "max_abs_diff_uint8": int(np.abs(got_u.astype(np.int16) - ref_u.astype(np.int16)).max()),
        "out_of_range": bool(got_f.min() < -1.0 or got_f.max() > 1.0),
    }


def export_onnx(
    bundle_path: str | Path,
    out_path: str | Path,
    opset: int = 17,
    batch_for_check: int = 8,
    atol: float = 1e-4,
    dynamo: bool = False,
    check_batches: tuple[int, ...] = (1,),
) -> dict[str, Any]:
    """Export ``bundle_path`` (generator.pt or its folder) to ``out_path`` (a .onnx file, or a folder that gets
    ``model.onnx``), check parity with PyTorch on CPU, and return the report (also the ``parity.json`` content).

    The file is written to a temporary name and moved into place only after every check passed: a failed
    export raises :class:`ExportError` and leaves nothing at ``out_path``. ``check_batches`` adds batch sizes
    checked besides ``batch_for_check`` (batch 1 by default: the dynamic axis must hold at both ends).
    ``dynamo=True`` uses the torch.export-based exporter (slower, ~6 s for a 64 px DCGAN); the default is the
    TorchScript exporter, whose graphs are identical in the ops used here.
    """
    import onnx
    import onnxruntime as ort

    bundle_path = Path(bundle_path)
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        out_path = out_path / "model.onnx"
    generator, meta = load_generator(bundle_path, "cpu")
    spec, classes = dict(meta["spec"]), list(meta["classes"])
    if spec.get("arch") == "ddpm":
        raise ExportError(f"'{bundle_path}' is a DDPM: it is not exported to ONNX or served through Triton (a sample is {spec.get('sample_steps')} UNet passes, not one graph)", "score it with histosynth evaluate; export and serve a GAN generator")
    conditional = spec.get("num_classes", 0) > 0
    if conditional and len(classes) != spec["num_classes"]:
        raise ExportError(f"bundle '{bundle_path}' has num_classes={spec['num_classes']} but {len(classes)} class names", "re-save the bundle with one name per class")
    spec.setdefault("latent_dim", 100)
    spec.setdefault("channels", 3)
    wrapped = _Served(generator, conditional).eval()
    feeds = _example_inputs(spec, max(2, batch_for_check), seed=0)
    args: tuple[torch.Tensor, ...] = (torch.from_numpy(feeds[INPUT_Z]),)
    input_names = [INPUT_Z]
    if conditional:
        args += (torch.from_numpy(feeds[INPUT_CLASS]),)
        input_names.append(INPUT_CLASS)
    output_names = [OUTPUT_FLOAT, OUTPUT_UINT8]
    dynamic_axes = {n: {0: "batch"} for n in input_names + output_names}

    with atomic_path(out_path, suffix=".onnx") as tmp:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                kwargs: dict[str, Any] = dict(input_names=input_names, output_names=output_names, opset_version=opset, dynamo=dynamo)
                if dynamo:
                    batch = torch.export.Dim("batch", min=1, max=65536)
                    kwargs["dynamic_shapes"] = {"z": {0: batch}, "class_id": {0: batch}} if conditional else {"z": {0: batch}}
                    kwargs["external_data"] = False
                else:
                    kwargs["dynamic_axes"] = dynamic_axes
                torch.onnx.export(wrapped, args, str(tmp), **kwargs)
            wrapped.eval()  # the legacy exporter restores the module's mode; keep it in eval regardless
        except Exception as e:  # noqa: BLE001 - any exporter failure is an export failure
            raise ExportError(f"torch.onnx.export failed for '{bundle_path}': {e.__class__.__name__}: {e}") from e

        model = onnx.load(str(tmp))
        onnx.checker.check_model(model)
        _check_signature(model, spec, conditional)
        for key, value in {
            "spec": spec,
            "classes": classes,
            "extra": meta.get("extra", {}),
            "format": "histosynth.onnx/1",
        }.items():
            prop = model.metadata_props.add()
            prop.key, prop.value = META_PREFIX + key, json.dumps(value, default=str)
        model.producer_name = "histosynth"
        opset_in_file = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
        onnx.save(model, str(tmp))

        checks = {}
        for b in sorted({int(batch_for_check), *map(int, check_batches)}):
            checks[str(b)] = check_parity(tmp, generator, spec, b, seed=b)
        worst = max(c["max_abs_diff"] for c in checks.values())
        worst_u8 = max(c["max_abs_diff_uint8"] for c in checks.values())
        report: dict[str, Any] = {
            "onnx_path": str(out_path),
            "bundle": str(bundle_path),
            "opset": opset_in_file,
            "exporter": "dynamo" if dynamo else "torchscript",
            "inputs": {INPUT_Z: ["B", spec["latent_dim"]], **({INPUT_CLASS: ["B"]} if conditional else {})},
            "outputs": {
                OUTPUT_FLOAT: ["B", spec["channels"], spec["image_size"], spec["image_size"]],
                OUTPUT_UINT8: ["B", spec["image_size"], spec["image_size"], spec["channels"]],
            },
            "spec": spec,
            "classes": classes,
            "atol": atol,
            "max_abs_diff": worst,
            "max_abs_diff_uint8": worst_u8,
            "per_batch": checks,
            "torch_version": torch.__version__,
            "onnx_version": onnx.__version__,
            "onnxruntime_version": ort.__version__,
        }
        if not np.isfinite(worst) or worst > atol or worst_u8 > 1 or any(c["out_of_range"] for c in checks.values()):
            raise ExportError(
                f"ONNX parity check failed for '{bundle_path}': max |onnx - torch| = {worst:.3g} (atol {atol:g}), uint8 max diff {worst_u8}",
                "nothing was written; check for ops whose ONNX export differs (or raise atol if the difference is understood)",
            )
        report["sha256"] = sha256_file(tmp)
        report["bundle_sha256"] = sha256_file(bundle_path / "generator.pt" if bundle_path.is_dir() else bundle_path)
    return report


def _check_signature(model: Any, spec: dict[str, Any], conditional: bool) -> None:
    """The graph's inputs/outputs must be exactly the serving contract, with a symbolic batch axis."""
    import onnx

    def sig(values):
        out = {}
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_param or d.dim_value for d in t.shape.dim]
            out[v.name] = (onnx.helper.tensor_dtype_to_np_dtype(t.elem_type), dims)
        return out

    ins, outs = sig(model.graph.input), sig(model.graph.output)
    want_in = {INPUT_Z: np.float32, **({INPUT_CLASS: np.int64} if conditional else {})}
    if set(ins) != set(want_in):
        raise ExportError(f"exported inputs {sorted(ins)} differ from {sorted(want_in)}")
    for name, dtype in want_in.items():
        if ins[name][0] != dtype or not isinstance(ins[name][1][0], str):
            raise ExportError(f"input {name} is {ins[name]}; want {np.dtype(dtype).name} with a dynamic batch axis")
    if set(outs) != {OUTPUT_FLOAT, OUTPUT_UINT8} or not all(isinstance(o[1][0], str) for o in outs.values()):
        raise ExportError(f"exported outputs {outs} differ from images/images_uint8 with a dynamic batch axis")


def write_parity_json(report: dict[str, Any], path: str | Path) -> Path:
    return write_json(path, report)


# -- export of registered models (CLI `histosynth export`, KFP export component, `histosynth serve`) ---------------

ONNX_ARTIFACT = "onnx"  # run artifact folder for model.onnx + parity.json
PARITY_TAG = "onnx_parity_max_abs_diff"


def _parity_json(path: Path) -> bool:
    """The parity report export writes beside model.onnx (what marks an export folder as ours)."""
    try:
        report = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(report, dict) and {"bundle_sha256", "max_abs_diff", "sha256"} <= report.keys()


def _cached_report(out_dir: Path, bundle: Path) -> dict[str, Any] | None:
    onnx_file, parity = out_dir / "model.onnx", out_dir / "parity.json"
    if not (onnx_file.is_file() and parity.is_file()):
        return None
    try:
        report = json.loads(parity.read_text())
    except ValueError:
        return None
    if report.get("bundle_sha256") != sha256_file(bundle) or report.get("sha256") != sha256_file(onnx_file):
        return None
    return report


def export_bundle(bundle_path: str | Path, out_dir: str | Path | None = None, force: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Export a bundle file to ``out_dir`` (default ``$HISTOSYNTH_HOME/exports/bundles/<sha12>/``), reusing an
    earlier export of the same bundle; -> {onnx_path, parity_path, report, cached}."""
    from histosynth import defaults

    bundle = Path(bundle_path)
    if bundle.is_dir():
        bundle = bundle / "generator.pt"
    if not bundle.is_file():
        raise ExportError(f"generator bundle '{bundle}' not found", "pass the generator.pt written by histosynth train")
    out = check_dir(Path(out_dir) if out_dir else defaults.paths().home / "exports" / "bundles" / sha256_file(bundle)[:12], marker="parity.json", names=("model.onnx",), ours=_parity_json, force=force)
    report = None if force else _cached_report(out, bundle)
    cached = report is not None
    if report is None:
        report = export_onnx(bundle, out / "model.onnx", **kwargs)
        write_parity_json(report, out / "parity.json")
    return {"onnx_path": str(out / "model.onnx"), "parity_path": str(out / "parity.json"), "report": report, "cached": cached}


def export_registered(
    name: str,
    version: int | str | None = None,
    alias: str | None = None,
    out_dir: str | Path | None = None,
    log_to_run: bool = True,
    force: bool = False,
    tracking_uri: str = "",
    **kwargs: Any,
) -> dict[str, Any]:
    """Resolve ``name`` (version / alias / latest), export it, log ``onnx/model.onnx`` + ``onnx/parity.json`` to the
    version's run and tag the version with ``onnx_parity_max_abs_diff``.

    -> {name, version, run_id, onnx_path, parity_path, report, cached, artifact_uri}. An export already made for
    the same bundle is reused (and not logged again) unless ``force``.
    """
    from histosynth import defaults, registry

    mv = registry.get_model_version(name, version=version, alias=alias, tracking_uri=tracking_uri)
    bundle = registry.resolve_generator(name, version=mv.version, tracking_uri=tracking_uri)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    out = Path(out_dir) if out_dir else defaults.paths().home / "exports" / safe / str(mv.version)
    res = export_bundle(bundle, out, force=force, **kwargs)
    artifact_uri = None
    if log_to_run and mv.run_id:
        from mlflow import MlflowClient

        client = MlflowClient()
        logged = (mv.tags or {}).get(PARITY_TAG) is not None
        if not (res["cached"] and logged):
            client.log_artifact(mv.run_id, res["onnx_path"], ONNX_ARTIFACT)
            client.log_artifact(mv.run_id, res["parity_path"], ONNX_ARTIFACT)
            rep = res["report"]
            client.set_model_version_tag(name, str(mv.version), PARITY_TAG, f"{rep['max_abs_diff']:.3e}")
            client.set_model_version_tag(name, str(mv.version), "onnx_opset", str(rep["opset"]))
            client.set_model_version_tag(name, str(mv.version), "onnx_sha256", rep["sha256"])
        artifact_uri = client.get_run(mv.run_id).info.artifact_uri.rstrip("/") + f"/{ONNX_ARTIFACT}/model.onnx"
    return {"name": name, "version": int(mv.version), "run_id": mv.run_id, "artifact_uri": artifact_uri, **res}
