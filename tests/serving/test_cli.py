"""The CLI end to end: register, export, serve (a real tritonserver in a subprocess), synth, and error output."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from servers import free_port

HISTOSYNTH = str(Path(sys.executable).parent / "histosynth")


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([HISTOSYNTH, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.integration
@pytest.mark.slow  # ~50 s on 2 cores: each CLI call is a fresh process importing torch/mlflow
def test_register_export_serve_synth(bundles, serve_cli, tmp_path):
    r = _cli("register", "--bundle", str(bundles["cgen"]), "--name", "demo", "--alias", "prod", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["version"] == 1 and info["aliases"] == ["prod"]
    r = _cli("register", "--run-id", info["run_id"], "--name", "demo")
    assert r.returncode == 0 and "registered demo version 2" in r.stdout, r.stderr
    r = _cli("export", "--name", "demo", "--alias", "prod", "--json")
    assert r.returncode == 0, r.stderr
    exported = json.loads(r.stdout.strip().splitlines()[-1])
    assert exported["version"] == 1 and Path(exported["onnx_path"]).is_file() and exported["max_abs_diff"] < 1e-4

    serve, http, grpc, metrics = serve_cli.start("--name", "demo", "--alias", "prod", "--max-batch", "8")
    try:
        out = tmp_path / "samples"
        r = _cli("synth", "--n", "12", "--seed", "7", "--class", "invasive", "--out", str(out), "--url", f"127.0.0.1:{grpc}", "--protocol", "grpc")
        assert r.returncode == 0, r.stderr
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["model"] == "demo" and manifest["model_version"] == "1" and manifest["protocol"] == "grpc"
        assert manifest["seed"] == 7 and manifest["n"] == 12 and manifest["class"] == "invasive" and manifest["batch"] == 8
        assert [e["file"] for e in manifest["images"]] == [f"{i:06d}.png" for i in range(12)]
        assert {e["class"] for e in manifest["images"]} == {"invasive"}
        from PIL import Image

        with Image.open(out / "000011.png") as im:
            assert im.size == (32, 32) and im.mode == "RGB"
        r2 = _cli("synth", "--n", "12", "--seed", "7", "--class", "invasive", "--out", str(tmp_path / "again"), "--url", f"127.0.0.1:{http}", "--batch", "5")
        assert r2.returncode == 0, r2.stderr
        assert all((out / f).read_bytes() == (tmp_path / "again" / f).read_bytes() for f in (e["file"] for e in manifest["images"]))

        r = _cli("synth", "--n", "4", "--out", str(tmp_path / "x"), "--url", f"127.0.0.1:{http}", "--class", "lymphoma")
        assert r.returncode == 2 and "unknown class 'lymphoma'" in r.stderr and "benign, invasive, normal" in r.stderr
        r = _cli("synth", "--n", "4", "--out", str(tmp_path / "x"), "--url", f"127.0.0.1:{http}", "--batch", "9")
        assert r.returncode == 2 and "exceeds the max_batch_size 8" in r.stderr
        r = _cli("synth", "--n", "4", "--out", str(tmp_path / "x"), "--url", f"127.0.0.1:{http}", "--model", "other")
        assert r.returncode == 2 and "model 'other' is not served" in r.stderr and "demo" in r.stderr
        metrics_text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10).read().decode()
        assert 'nv_inference_request_success{model="demo",version="1"}' in metrics_text
    finally:
        code, log = serve_cli.stop(serve)
    assert code == 0, log
    assert "tritonserver ready" in log and "stopping tritonserver" in log
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/live", timeout=2)


@pytest.mark.integration
def test_synth_server_down_message(tmp_path):
    port = free_port()
    r = _cli("synth", "--n", "4", "--out", str(tmp_path), "--url", f"127.0.0.1:{port}")
    assert r.returncode == 2
    assert f"no Triton server answers at 127.0.0.1:{port}" in r.stderr and "histosynth serve" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.integration
def test_cli_argument_errors(tmp_path):
    r = _cli("export", "--name", "a", "--bundle", "b")
    assert r.returncode == 2 and "exactly one of --name NAME or --bundle PATH" in r.stderr
    r = _cli("register", "--name", "a")
    assert r.returncode == 2 and "nothing to register" in r.stderr
    r = _cli("serve", "--repo", str(tmp_path / "none"))
    assert r.returncode == 2 and "no model repository" in r.stderr
    r = _cli("serve", "--bundle", "x.pt", "--variant", "cloud")
    assert r.returncode == 2 and "unknown variant" in r.stderr
