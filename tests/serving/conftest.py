"""Fixtures for serving tests: tiny random-init generator bundles, their ONNX exports, a live tritonserver, and a
`histosynth serve` process started for real."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from servers import free_port

from histosynth.gan.bundle import save_generator
from histosynth.gan.nets import build_generator, init_dcgan_weights

CLASSES = ["benign", "invasive", "normal"]


def make_bundle(path: Path, num_classes: int = 0, image_size: int = 32, latent_dim: int = 16, features: int = 8, seed: int = 0) -> Path:
    """A random-init DCGAN generator bundle (small: exports and serves in well under a second)."""
    spec = {"arch": "dcgan", "image_size": image_size, "latent_dim": latent_dim, "g_features": features, "channels": 3, "num_classes": num_classes}
    torch.manual_seed(seed)
    g = build_generator(spec)
    init_dcgan_weights(g)
    # non-trivial batch-norm statistics, so eval-mode export is actually exercised
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return save_generator(path, g, spec, CLASSES[:num_classes], extra={"note": "test"})


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return {"gen": make_bundle(root / "gen", 0), "cgen": make_bundle(root / "cgen", len(CLASSES), seed=1)}


@pytest.fixture(scope="session")
def onnx_models(bundles, tmp_path_factory) -> dict[str, Path]:
    from histosynth.export.onnx import export_onnx

    root = tmp_path_factory.mktemp("onnx")
    return {k: Path(export_onnx(b, root / k / "model.onnx")["onnx_path"]) for k, b in bundles.items()}


@pytest.fixture(scope="module")
def triton(onnx_models, tmp_path_factory):
    """A real tritonserver (python backend) serving `gen` v1 and `cgen` v3, max_batch_size 16, on free ports."""
    from histosynth.serving import DynamicBatching, TritonServer, build_repository

    root = tmp_path_factory.mktemp("triton")
    repo = root / "repo"
    build_repository(onnx_models["gen"], repo, "gen", 1, max_batch_size=16, dynamic_batching=DynamicBatching((4, 8, 16), 2000))
    build_repository(onnx_models["cgen"], repo, "cgen", 3, max_batch_size=16)
    server = TritonServer(repo, free_port(), free_port(), free_port(), workdir=root / "work", extra_args=["--exit-timeout-secs=3"])
    with server:
        server.wait_ready(timeout=90)
        yield server


HISTOSYNTH = str(Path(sys.executable).parent / "histosynth")


def start_serve(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int, int, int]:
    """`histosynth serve ARGS` on free loopback ports, waited on until its models are ready.

    -> (process, http, grpc, metrics ports); stdout and stderr are merged into ``process.stdout`` (text).
    """
    http, grpc, metrics = free_port(), free_port(), free_port()
    cmd = [HISTOSYNTH, "serve", *args, "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"histosynth serve exited with {proc.returncode}:\n{proc.stdout.read()}")
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2).status == 200:
                return proc, http, grpc, metrics
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"histosynth serve was not ready after {timeout:.0f} s:\n{proc.stdout.read()}")
        time.sleep(0.3)


def stop_serve(proc: subprocess.Popen, timeout: float = 40) -> tuple[int, str]:
    """SIGTERM `histosynth serve` (as Ctrl-C would) -> (exit code, its output)."""
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return code, proc.stdout.read()


@pytest.fixture(scope="session")
def serve_cli():
    """``serve_cli.start(*args)`` / ``serve_cli.stop(proc)``: real `histosynth serve` processes for CLI tests."""
    from types import SimpleNamespace

    return SimpleNamespace(start=start_serve, stop=stop_serve)
