"""Triton python-backend model: runs the exported generator ONNX with onnxruntime.

This file is copied verbatim as ``<repo>/<model>/<version>/model.py`` by
``histosynth.serving.repository.build_repository(variant="local")`` and runs inside Triton's python-backend
stub, never imported by histosynth itself. It depends only on numpy, onnxruntime and the backend's
``triton_python_backend_utils``: the same ``model.onnx`` that the production ``onnxruntime_onnx`` variant
serves, so both variants return the same bytes.

Config parameters (``config.pbtxt``): ``onnx_file`` (default ``model.onnx``), ``device`` (``cpu``, ``cuda``
or ``auto``: CUDA when onnxruntime has the CUDA provider) and ``intra_op_threads`` (0: onnxruntime's default).
Requests from dynamic batching are concatenated and run as one onnxruntime call; only the requested
outputs are computed and returned.

Besides Triton's own metrics it exports, through the python backend's custom-metrics API (``pb_utils.MetricFamily``,
same ``/metrics`` port), labelled by model and version: ``histosynth_generator_requests_total``,
``histosynth_generator_request_failures_total``, ``histosynth_generator_images_total`` and the histogram
``histosynth_generator_request_duration_seconds`` (from the batch reaching this model to its responses).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def _param(config: dict, key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value != "" else default


class TritonPythonModel:
    def initialize(self, args):
        self.config = json.loads(args["model_config"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        onnx_path = os.path.join(version_dir, _param(self.config, "onnx_file", "model.onnx"))
        device = _param(self.config, "device", "cpu")
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
            device_id = int(args.get("model_instance_device_id", 0) or 0)
            providers = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
        elif device == "cuda":
            raise pb_utils.TritonModelException(f"device=cuda but onnxruntime has no CUDAExecutionProvider (available: {available}); install onnxruntime-gpu or set device=cpu")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        threads = int(_param(self.config, "intra_op_threads", "0"))
        if threads > 0:
            so.intra_op_num_threads = threads
        self.session = ort.InferenceSession(onnx_path, so, providers=providers)
        self.input_names = [i["name"] for i in self.config["input"]]
        self.output_names = [o["name"] for o in self.config["output"]]
        self.num_classes = int(_param(self.config, "num_classes", "0"))
        self.max_batch_size = int(self.config.get("max_batch_size", 0))
        self.metrics = _Metrics(args.get("model_name", self.config.get("name", "")), str(args.get("model_version", "")))

    def _validate(self, feeds: dict) -> str | None:
        z = feeds.get("z")
        if z is not None and not np.all(np.isfinite(z)):
            return "z contains NaN or inf"
        if "class_id" in feeds:
            c = feeds["class_id"]
            if c.size and (c.min() < 0 or c.max() >= self.num_classes):
                return f"class_id must be in [0, {self.num_classes - 1}], got values in [{c.min()}, {c.max()}]"
        return None

    def execute(self, requests):
        t0 = time.perf_counter()
        responses = self._execute(requests)
        self.metrics.record(responses, time.perf_counter() - t0)
        return responses

    def _execute(self, requests):
        responses: list = [None] * len(requests)
        feeds_per_req, sizes, wanted, valid = [], [], [], []
        for i, request in enumerate(requests):
            feeds = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names}
            if "class_id" in feeds:  # Triton's reshape gives (B,); tolerate (B, 1) all the same
                feeds["class_id"] = feeds["class_id"].reshape(-1).astype(np.int64, copy=False)
            problem = self._validate(feeds)
            if problem:
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(problem))
                continue
            names = list(request.requested_output_names()) or self.output_names
            feeds_per_req.append(feeds)
            sizes.append(next(iter(feeds.values())).shape[0])
            wanted.append(names)
            valid.append(i)
        if valid:
            outputs = sorted({n for names in wanted for n in names}, key=self.output_names.index)
            batch = {name: np.concatenate([f[name] for f in feeds_per_req]) for name in self.input_names}
            try:
                results = dict(zip(outputs, self.session.run(outputs, batch)))
            except Exception as e:  # noqa: BLE001 - report onnxruntime failures to every waiting client
                for i in valid:
                    responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(f"onnxruntime: {e}"))
                return responses
            start = 0
            for i, n, names in zip(valid, sizes, wanted):
                tensors = [pb_utils.Tensor(name, np.ascontiguousarray(results[name][start : start + n])) for name in names]
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                start += n
        return responses

    def finalize(self):
        self.metrics.close()
        self.session = None


LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]


class _Metrics:
    """Custom Prometheus metrics of this model instance; a backend without the metrics API just skips them."""

    def __init__(self, model: str, version: str):
        self.families: list = []
        self.requests = self.failures = self.images = self.latency = None
        try:
            mf = pb_utils.MetricFamily
            labels = {"model": model, "version": version}

            def family(name, description, kind):
                f = mf(name=name, description=description, kind=kind)
                self.families.append(f)
                return f

            self.requests = family("histosynth_generator_requests_total", "Inference requests answered by the generator", mf.COUNTER).Metric(labels=labels)
            self.failures = family("histosynth_generator_request_failures_total", "Inference requests answered with an error", mf.COUNTER).Metric(labels=labels)
            self.images = family("histosynth_generator_images_total", "Images generated", mf.COUNTER).Metric(labels=labels)
            self.latency = family("histosynth_generator_request_duration_seconds", "Time from a batch reaching the model to its responses", mf.HISTOGRAM).Metric(labels=labels, buckets=LATENCY_BUCKETS)
        except Exception as e:  # noqa: BLE001 - metrics are optional; serving is not
            pb_utils.Logger.log_warn(f"histosynth: custom metrics unavailable ({e})")
            self.requests = None

    def record(self, responses, seconds: float) -> None:
        if self.requests is None:
            return
        for r in responses:
            self.requests.increment(1)
            if r is None or r.has_error():
                self.failures.increment(1)
                continue
            self.latency.observe(seconds)
            out = r.output_tensors()
            if out:
                self.images.increment(int(out[0].as_numpy().shape[0]))

    def close(self) -> None:
        self.requests = self.failures = self.images = self.latency = None  # metrics before their families
        self.families = []
