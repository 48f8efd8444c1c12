"""`histosynth serve` as a user runs it: a steady load with zero errors, argument errors that send no request, and a
tritonserver killed under it (kill -9) that ends `serve` with a clear message and nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from histosynth.serving import GeneratorClient, latents

pytestmark = pytest.mark.integration

REQUESTS, THREADS, BATCH = 1000, 8, 2
HISTOSYNTH = str(Path(sys.executable).parent / "histosynth")


def _flat(text: str) -> str:
    """Rich wraps long error lines at the terminal width: compare with whitespace collapsed."""
    return " ".join(text.split())


def _request_counts(url: str, model: str) -> tuple[int, int]:
    """(successful, failed) inference requests the server counted for ``model``."""
    import tritonclient.http as th

    client = th.InferenceServerClient(url)
    try:
        stats = client.get_inference_statistics(model)["model_stats"][0]["inference_stats"]
    finally:
        client.close()
    return int(stats["success"]["count"]), int(stats["fail"]["count"])


@pytest.fixture(scope="module")
def served(serve_cli, bundles, tmp_path_factory):
    """`histosynth serve --bundle` of the 3-class generator (model 'cgen', max batch 8) on loopback."""
    home = tmp_path_factory.mktemp("serve-home")
    env = {**os.environ, "HISTOSYNTH_HOME": str(home)}
    proc, http, grpc, _ = serve_cli.start("--bundle", str(bundles["cgen"]), "--model-name", "cgen", "--max-batch", "8", env=env)
    try:
        yield f"127.0.0.1:{http}"
    finally:
        code, log = serve_cli.stop(proc)
        assert code == 0, log


def test_1000_requests_at_concurrency_8_without_errors(served):
    """One client per thread (tritonclient.http clients are not thread-safe); every answer is checked."""
    before = _request_counts(served, "cgen")
    done, errors = [0] * THREADS, []

    def worker(t: int) -> None:
        try:
            with GeneratorClient(served, "http", model="cgen", timeout=30) as client:
                for k in range(REQUESTS // THREADS):
                    i = t * (REQUESTS // THREADS) + k
                    imgs, version = client.generate(latents(t, [2 * k, 2 * k + 1], client.info.latent_dim), np.array([i % 3, (i + 1) % 3]))
                    assert imgs.shape == (BATCH, 32, 32, 3) and imgs.dtype == np.uint8 and version == "1"
                    done[t] += 1
        except Exception as e:  # noqa: BLE001 - every failure is reported below
            errors.append(f"thread {t}: {e.__class__.__name__}: {e}")

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, 180 - (time.monotonic() - t0)))
    assert not any(t.is_alive() for t in threads), f"load did not finish in 180 s ({sum(done)} of {REQUESTS} requests)"
    assert errors == [] and sum(done) == REQUESTS
    success, failed = _request_counts(served, "cgen")
    assert (success - before[0], failed - before[1]) == (REQUESTS, 0)


def test_bad_class_is_refused_before_any_inference_request(served, tmp_path):
    before = _request_counts(served, "cgen")
    r = subprocess.run([HISTOSYNTH, "synth", "--n", "4", "--class", "lymphoma", "--out", str(tmp_path / "x"), "--url", served], capture_output=True, text=True, timeout=120)
    err = _flat(r.stderr)
    assert r.returncode == 2 and "unknown class 'lymphoma'" in err and "use one of: benign, invasive, normal" in err, r.stderr
    assert _request_counts(served, "cgen") == before
    assert not (tmp_path / "x").exists()


def test_tritonserver_killed_under_serve_ends_it_with_a_clear_error(serve_cli, bundles, tmp_path):
    env = {**os.environ, "HISTOSYNTH_HOME": str(tmp_path / "home")}
    proc, http, _, _ = serve_cli.start("--bundle", str(bundles["gen"]), env=env)
    seen = ""
    try:
        # Triton answering is not enough: kill it only once serve itself is serving (past its own readiness check)
        while "Ctrl-C to stop" not in seen:
            line = proc.stdout.readline()
            assert line, f"serve ended before serving:\n{seen}"
            seen += line
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        triton = [int(c) for c in children if "tritonserver" in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")]
        assert len(triton) == 1, children
        assert list(Path("/dev/shm").glob(f"histosynth{proc.pid}-*")), "the python backend's shared memory regions"
        os.kill(triton[0], signal.SIGKILL)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = _flat(seen + proc.stdout.read())
    assert code == 2, out
    assert "error: tritonserver was killed by SIGKILL (signal 9) while serving" in out and "fix:" in out and "dmesg" in out
    assert "Traceback" not in out
    assert not list(Path("/dev/shm").glob(f"histosynth{proc.pid}-*")), "regions left in /dev/shm"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/live", timeout=2)
