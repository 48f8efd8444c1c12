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
"""

from __future__ import annotations

import json
import os

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
        self.session = None
