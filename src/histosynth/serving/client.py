"""Client for served generators: discover a model, request deterministic batches, write PNGs + manifest.

Determinism: the latent of sample ``i`` is ``standard_normal(latent_dim)`` from numpy's PCG64 seeded with
``SeedSequence([seed, i])`` - it depends on (seed, i) only, so the same seed and model give the same images
whatever the batch split (the served ONNX computes each sample independently of its batch neighbours).

One client object holds one connection and is not thread-safe (tritonclient.http runs on gevent and is bound to
the thread that created it): create one ``GeneratorClient`` per thread, in that thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from histosynth.errors import HistosynthError, ServerError
from histosynth.export.contract import INPUT_CLASS, INPUT_Z, OUTPUT_FLOAT, OUTPUT_UINT8

Protocol = Literal["http", "grpc"]
DEFAULT_URLS = {"http": "localhost:8000", "grpc": "localhost:8001"}
START_HINT = "start one with `histosynth serve --name NAME` (HTTP on :8000, gRPC on :8001), or pass --url HOST:PORT of a running Triton server"


def latents(seed: int, indices: np.ndarray | list[int] | range, latent_dim: int) -> np.ndarray:
    """(len(indices), latent_dim) float32; row k depends only on (seed, indices[k])."""
    if seed < 0:
        raise HistosynthError(f"seed must be >= 0, got {seed}")
    out = np.empty((len(indices), latent_dim), dtype=np.float32)
    for k, i in enumerate(indices):
        out[k] = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(i)]))).standard_normal(latent_dim, dtype=np.float32)
    return out


@dataclass
class ModelInfo:
    name: str
    max_batch_size: int
    latent_dim: int
    image_size: int
    channels: int
    classes: list[str]
    inputs: list[str]
    outputs: list[str]
    versions: list[str] = field(default_factory=list)

    @property
    def conditional(self) -> bool:
        """Whether the model takes a class id: its inputs say so (an unconditional model trained on several
        classes still lists their names)."""
        return INPUT_CLASS in self.inputs

    def class_id(self, name: str) -> int:
        if not self.conditional:
            raise HistosynthError(f"model '{self.name}' is unconditional: it takes no class", "leave out --class")
        if name in self.classes:
            return self.classes.index(name)
        raise HistosynthError(f"unknown class '{name}' for model '{self.name}'", f"use one of: {', '.join(self.classes)}")


def _strip_scheme(url: str) -> str:
    for scheme in ("http://", "https://", "grpc://"):
        if url.startswith(scheme):
            return url[len(scheme) :].rstrip("/")
    return url.rstrip("/")


def _param(cfg: dict[str, Any], key: str, default: str = "") -> str:
    value = cfg.get("parameters", {}).get(key, {})
    return value.get("string_value", value.get("stringValue", default)) if isinstance(value, dict) else default


class GeneratorClient:
    """A served generator over HTTP or gRPC: ``GeneratorClient("localhost:8000").generate(z)``."""

    def __init__(self, url: str | None = None, protocol: Protocol = "http", model: str | None = None, model_version: str = "", timeout: float = 120.0):
        if protocol not in DEFAULT_URLS:
            raise HistosynthError(f"unknown protocol '{protocol}'", "use http or grpc")
        self.protocol = protocol
        self.url = _strip_scheme(url or DEFAULT_URLS[protocol])
        self.timeout = float(timeout)
        self.model_version = str(model_version or "")
        if protocol == "http":
            import tritonclient.http as tc

            self._tc = tc
            self._client = tc.InferenceServerClient(self.url, connection_timeout=min(10.0, timeout), network_timeout=timeout)
        else:
            import tritonclient.grpc as tc

            self._tc = tc
            self._client = tc.InferenceServerClient(self.url)
        try:
            live = self._client.is_server_live() if protocol == "http" else self._client.is_server_live(client_timeout=min(10.0, timeout))
        except Exception as e:  # noqa: BLE001 - refused, DNS, timeout: all mean "no server there"
            self.close()
            raise ServerError(f"no Triton server answers at {self.url} over {protocol} ({e.__class__.__name__}: {str(e)[:200]})", START_HINT) from e
        if not live:
            self.close()
            raise ServerError(f"the Triton server at {self.url} is not live", START_HINT)
        self.info = self._model_info(model)

    # -- discovery --------------------------------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        """The repository index: [{name, version, state}, ...]."""
        index = self._client.get_model_repository_index(**({"as_json": True} if self.protocol == "grpc" else {}))
        if isinstance(index, dict):
            index = index.get("models", [])
        return list(index)

    def _model_info(self, model: str | None) -> ModelInfo:
        index = self.models()
        ready = sorted({m["name"] for m in index if m.get("state", "READY") == "READY"})
        if model is None:
            if len(ready) != 1:
                raise HistosynthError(
                    f"the server at {self.url} serves {len(ready)} ready models ({', '.join(ready) or 'none'}); say which",
                    "pass --model NAME" if ready else "check the server log: no model loaded",
                )
            model = ready[0]
        try:
            if self.protocol == "http":
                cfg = self._client.get_model_config(model, self.model_version)
            else:
                cfg = self._client.get_model_config(model, self.model_version, as_json=True)["config"]
        except self._tc.InferenceServerException as e:
            raise ServerError(
                f"model '{model}'{' version ' + self.model_version if self.model_version else ''} is not served at {self.url} ({e.message()})",
                f"served models: {', '.join(ready) or 'none'}; pass one with --model",
            ) from e
        inputs = [i["name"] for i in cfg.get("input", [])]
        outputs = [o["name"] for o in cfg.get("output", [])]
        if INPUT_Z not in inputs or OUTPUT_UINT8 not in outputs:
            raise HistosynthError(f"model '{model}' at {self.url} is not a histosynth generator (inputs {inputs}, outputs {outputs})", "serve a model built by histosynth serve")
        return ModelInfo(
            name=model,
            max_batch_size=int(cfg.get("max_batch_size", cfg.get("maxBatchSize", 0)) or 0),
            latent_dim=int(_param(cfg, "latent_dim", "0")),
            image_size=int(_param(cfg, "image_size", "0")),
            channels=int(_param(cfg, "channels", "3")),
            classes=list(json.loads(_param(cfg, "classes", "[]"))),
            inputs=inputs,
            outputs=outputs,
            versions=sorted({str(m.get("version", "")) for m in index if m["name"] == model and m.get("version")}),
        )

    # -- inference --------------------------------------------------------------------------------------------
    def generate(self, z: np.ndarray, class_ids: np.ndarray | None = None, output: str = OUTPUT_UINT8) -> tuple[np.ndarray, str]:
        """One request: z (B, latent_dim) [+ class ids (B,)] -> (images, served model version).

        ``output="images_uint8"``: uint8 (B, H, W, C); ``"images"``: float32 (B, C, H, W) in [-1, 1].
        """
        info = self.info
        z = np.ascontiguousarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != info.latent_dim:
            raise HistosynthError(f"z must have shape (B, {info.latent_dim}), got {z.shape}")
        b = z.shape[0]
        if info.max_batch_size and b > info.max_batch_size:
            raise HistosynthError(f"batch of {b} exceeds the max_batch_size {info.max_batch_size} of model '{info.name}'", f"use --batch {info.max_batch_size} or less")
        if output not in (OUTPUT_UINT8, OUTPUT_FLOAT):
            raise HistosynthError(f"unknown output '{output}'", f"use {OUTPUT_UINT8} or {OUTPUT_FLOAT}")
        tc = self._tc
        zin = tc.InferInput(INPUT_Z, list(z.shape), "FP32")
        zin.set_data_from_numpy(z)
        inputs = [zin]
        if info.conditional:
            if class_ids is None:
                raise HistosynthError(f"model '{info.name}' is class-conditional", f"pass class ids (one of: {', '.join(info.classes)})")
            c = np.ascontiguousarray(np.asarray(class_ids, dtype=np.int64).reshape(b, 1))
            cin = tc.InferInput(INPUT_CLASS, [b, 1], "INT64")
            cin.set_data_from_numpy(c)
            inputs.append(cin)
        elif class_ids is not None:
            raise HistosynthError(f"model '{info.name}' is unconditional: it takes no class", "leave out --class")
        outputs = [tc.InferRequestedOutput(output, binary_data=True) if self.protocol == "http" else tc.InferRequestedOutput(output)]
        try:
            if self.protocol == "http":
                res = self._client.infer(info.name, inputs, model_version=self.model_version, outputs=outputs)
            else:
                res = self._client.infer(info.name, inputs, model_version=self.model_version, outputs=outputs, client_timeout=self.timeout)
        except tc.InferenceServerException as e:
            raise ServerError(f"inference on '{info.name}' at {self.url} failed: {e.message()}") from e
        except Exception as e:  # noqa: BLE001 - connection dropped mid-request
            raise ServerError(f"lost the Triton server at {self.url} during a request ({e.__class__.__name__}: {e})", START_HINT) from e
        version = res.get_response(as_json=True)["model_version"] if self.protocol == "grpc" else res.get_response()["model_version"]
        return res.as_numpy(output), str(version)

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self) -> "GeneratorClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class SynthResult:
    images: np.ndarray  # uint8 (N, H, W, C)
    class_ids: np.ndarray | None  # int64 (N,) or None
    model: str
    model_version: str


def check_request(n: int, seed: int, batch: int | None = None) -> None:
    """Reject a request that cannot succeed before anything is sent to the server."""
    from histosynth.defaults import ENV_SYNTH_MAX, synth_max

    if n < 1:
        raise HistosynthError(f"--n must be >= 1, got {n}", "ask for at least one image")
    limit = synth_max()
    if n > limit:
        raise HistosynthError(
            f"--n {n} is more than the {limit} images one synth call may request (every image is held in memory until written)",
            f"split the job into several calls with different --seed or --out, or raise the limit with {ENV_SYNTH_MAX}={n}",
        )
    if seed < 0:
        raise HistosynthError(f"--seed must be >= 0, got {seed}")
    if batch is not None and batch < 1:
        raise HistosynthError(f"--batch must be >= 1, got {batch}")


def synthesize(client: GeneratorClient, n: int, seed: int, class_name: str | None = None, batch: int | None = None) -> SynthResult:
    """``n`` images in batches of at most ``batch`` (<= the model's max_batch_size; default min(32, max_batch_size)).

    Conditional models: ``class_name`` for every image, else classes in turn (``i % num_classes``).
    """
    info = client.info
    check_request(n, seed, batch)
    if batch is None:
        batch = min(32, info.max_batch_size) if info.max_batch_size else 32
    if info.max_batch_size and batch > info.max_batch_size:
        raise HistosynthError(f"--batch {batch} exceeds the max_batch_size {info.max_batch_size} of model '{info.name}'", f"use --batch {info.max_batch_size} or less")
    class_ids = None
    if class_name is not None:
        class_ids = np.full(n, info.class_id(class_name), dtype=np.int64)
    elif info.conditional:
        class_ids = np.arange(n, dtype=np.int64) % len(info.classes)
    chunks, version = [], ""
    for start in range(0, n, batch):
        idx = np.arange(start, min(n, start + batch))
        imgs, version = client.generate(latents(seed, idx, info.latent_dim), None if class_ids is None else class_ids[idx])
        chunks.append(imgs)
    return SynthResult(np.concatenate(chunks), class_ids, info.name, version)


def write_pngs(result: SynthResult, out_dir: str | Path, manifest: dict[str, Any] | None = None) -> Path:
    """``<out_dir>/000000.png ...`` + ``manifest.json``; -> the manifest path."""
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(len(result.images) - 1)))
    classes = (manifest or {}).get("classes", [])
    files = []
    for i, img in enumerate(result.images):
        name = f"{i:0{width}d}.png"
        arr = img[..., 0] if img.shape[-1] == 1 else img
        Image.fromarray(arr).save(out_dir / name, format="PNG")
        entry: dict[str, Any] = {"file": name, "index": i}
        if result.class_ids is not None:
            cid = int(result.class_ids[i])
            entry["class_id"] = cid
            if cid < len(classes):
                entry["class"] = classes[cid]
        files.append(entry)
    body = dict(manifest or {})
    body.update({"model": result.model, "model_version": result.model_version, "n": len(result.images), "images": files})
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path
