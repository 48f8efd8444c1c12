"""Promotion reaches a running Triton: explicit model control, `histosynth serve --reload` and the alias watcher swap
the served version without a restart; the python-backend model's custom metrics appear on the metrics port."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from servers import free_port

from histosynth import registry
from histosynth.cli.serve import EXPLICIT_MODE
from histosynth.serving import GeneratorClient, TritonServer, latents, prepare_model
from histosynth.serving.reload import served_versions, watch_alias

pytestmark = pytest.mark.integration
HISTOSYNTH = str(Path(sys.executable).parent / "histosynth")
NAME = "gen-reload"


def _other_bundle(path: Path) -> Path:
    """An unconditional generator with the same contract as bundles["gen"] but other weights."""
    import torch

    from histosynth.gan.bundle import load_generator, save_generator

    g, meta = load_generator(Path(str(path)))
    with torch.no_grad():
        for p in g.parameters():
            p.mul_(-1.0)
    return save_generator(path.parent.parent / "other", g, meta["spec"], meta["classes"])


def _metrics(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(histosynth_\w+)\{([^}]*)\} (\S+)$", line)
        if m:
            out[f"{m.group(1)}{{{m.group(2)}}}"] = float(m.group(3))
    return out


def _onnx_images(onnx_path: str, z: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(["images_uint8"], {"z": z})[0]


def _generate(server, z):
    with GeneratorClient(server.http_url, "http", model=NAME) as c:
        return c.generate(z)


def test_reload_and_watch_swap_the_champion_without_restart(bundles, tmp_path):
    v1 = int(registry.register_generator(bundles["gen"], NAME, alias="champion").version)
    repo = tmp_path / "repo"
    first = prepare_model(repo, name=NAME, alias="champion", max_batch_size=8)
    assert first["version"] == v1
    server = TritonServer(repo, free_port(), free_port(), free_port(), workdir=tmp_path / "work", extra_args=[*EXPLICIT_MODE, "--exit-timeout-secs=3"])
    with server:
        server.wait_ready(timeout=90)
        pid = server.proc.pid
        z = latents(5, range(6), 16)
        imgs1, served = _generate(server, z)
        assert served == str(v1) and np.array_equal(imgs1, _onnx_images(first["onnx_path"], z))

        # custom python-backend metrics next to Triton's own, labelled by model and version
        labels = f'model="{NAME}",version="{v1}"'
        with GeneratorClient(server.http_url, "http", model=NAME) as c:
            c.generate(latents(6, range(3), 16))
        deadline = time.monotonic() + 10
        while True:
            m = _metrics(server.metrics_url)
            if m.get(f"histosynth_generator_requests_total{{{labels}}}") == 2.0:
                break
            assert time.monotonic() < deadline, f"custom metrics did not appear: {sorted(m)[:10]}"
            time.sleep(0.3)
        assert m[f"histosynth_generator_images_total{{{labels}}}"] == 9.0
        assert m[f"histosynth_generator_request_failures_total{{{labels}}}"] == 0.0
        assert m[f"histosynth_generator_request_duration_seconds_count{{{labels}}}"] == 2.0
        assert m[f'histosynth_generator_request_duration_seconds_bucket{{{labels},le="+Inf"}}'] == 2.0
        assert 0 < m[f"histosynth_generator_request_duration_seconds_sum{{{labels}}}"] < 10
        text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
        assert re.search(rf'nv_inference_request_success\{{model="{NAME}",version="{v1}"\}} 2', text)  # Triton's own

        # promotion moves the alias; `histosynth serve --reload` makes the running server serve it
        v2 = int(registry.register_generator(_other_bundle(bundles["gen"]), NAME).version)
        registry.set_alias(NAME, "champion", v2)
        r = subprocess.run([HISTOSYNTH, "serve", "--reload", "--name", NAME, "--alias", "champion", "--repo", str(repo), "--url", server.http_url, "--max-batch", "8"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"loaded {NAME} version {v2}" in " ".join(r.stdout.split()) and f"served before: {v1}" in " ".join(r.stdout.split())
        assert served_versions(server.http_url, NAME) == [str(v2)]
        imgs2, served = _generate(server, z)
        onnx2 = Path(repo / NAME / str(v2) / "model.onnx")
        assert served == str(v2) and np.array_equal(imgs2, _onnx_images(str(onnx2), z)) and not np.array_equal(imgs2, imgs1)
        assert server.proc.pid == pid and server.running()  # no restart
        assert sorted(p.name for p in (repo / NAME).iterdir() if p.is_dir()) == [str(v2)]

        # the watcher follows the alias when it moves back (a rollback), within a poll or two
        registry.set_alias(NAME, "champion", v1)
        stop, reloads = threading.Event(), []
        t = threading.Thread(target=watch_alias, args=(server.http_url, repo, NAME, "champion"), kwargs={"interval": 0.5, "should_stop": stop.is_set, "on_reload": reloads.append, "max_batch_size": 8}, daemon=True)
        t.start()
        try:
            deadline = time.monotonic() + 120
            while served_versions(server.http_url, NAME) != [str(v1)]:
                assert time.monotonic() < deadline, "the watcher did not load the new champion"
                time.sleep(0.3)
        finally:
            stop.set()
            t.join(timeout=30)
        assert [i["version"] for i in reloads] == [v1] and reloads[0]["previous"] == [str(v2)]
        imgs3, served = _generate(server, z)
        assert served == str(v1) and np.array_equal(imgs3, imgs1) and server.proc.pid == pid


def test_reload_needs_a_running_server(bundles, tmp_path):
    registry.register_generator(bundles["gen"], NAME, alias="champion")
    r = subprocess.run([HISTOSYNTH, "serve", "--reload", "--name", NAME, "--alias", "champion", "--repo", str(tmp_path / "repo"), "--url", f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no Triton server answers at 127.0.0.1:" in " ".join(r.stderr.split())
