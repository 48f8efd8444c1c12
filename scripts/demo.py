"""`make demo`: the whole product on one machine with embedded defaults, using the same commands a user types.

1. `dvc repro`: real sample images (from published wheels) -> tissue-segmented patches -> leakage-free splits,
   versioned with DVC and pushed to the project-local remote.
2. `histosynth pipeline run train`: the KFP pipeline through kfp.local (data -> train -> evaluate -> register
   -> export), tracked in the local SQLite MLflow store.
3. `histosynth serve`: a real tritonserver with the registered generator; `histosynth synth` requests a batch
   over HTTP and writes PNGs; the server is stopped.

Environment: DEMO_PRESET (default configs/dcgan-samples.yaml), DEMO_N (images, default 64), DEMO_PORT (HTTP port).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODEL = "histosynth-dcgan"


def step(title: str) -> None:
    print(f"\n\033[1;36m==> {title}\033[0m", flush=True)


def sh(*args: str) -> None:
    print("$ " + " ".join(args), flush=True)
    subprocess.run(list(args), cwd=ROOT, check=True)


def free_port(preferred: int) -> int:
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", preferred)) != 0:
            return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"histosynth serve exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit(f"Triton did not become ready at {url} within {timeout:.0f} s")


def trained_run() -> dict[str, str]:
    """The MLflow run behind the candidate version, for the summary."""
    from mlflow import MlflowClient

    from histosynth import defaults, tracking

    uri = defaults.mlflow_tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.get_model_version_by_alias(MODEL, "candidate")
    run = client.get_run(mv.run_id)
    return {"version": str(mv.version), "run_id": mv.run_id, "link": tracking.run_link(uri, run.info.experiment_id, mv.run_id)}


def main() -> int:
    t0 = time.perf_counter()
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    preset = os.environ.get("DEMO_PRESET", "configs/dcgan-samples.yaml")
    n = os.environ.get("DEMO_N", "64")
    out_dir = ROOT / "demo-output"

    step("1/3 versioned sample data: dvc repro && dvc push")
    sh("dvc", "repro")
    sh("dvc", "push")

    step(f"2/3 training pipeline on kfp.local ({preset})")
    sh(str(BIN / "histosynth"), "pipeline", "run", "train", "--config", preset, "--data-repo", ".", "--model-name", MODEL, "--alias", "candidate")

    step("3/3 serve the registered generator from tritonserver and request a batch")
    http, grpc, metrics = free_port(8000), free_port(8001), free_port(8002)
    serve = [str(BIN / "histosynth"), "serve", "--name", MODEL, "--alias", "candidate", "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    print("$ " + " ".join(serve), flush=True)
    server = subprocess.Popen(serve, cwd=ROOT, start_new_session=True)
    try:
        wait_ready(f"127.0.0.1:{http}", server)
        sh(str(BIN / "histosynth"), "synth", "--n", n, "--seed", "7", "--out", str(out_dir), "--url", f"127.0.0.1:{http}", "--model", MODEL)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    run = trained_run()
    print(f"\n\033[1;32mdemo finished in {time.perf_counter() - t0:.0f} s\033[0m")
    print(f"  registered model: {MODEL}@candidate = version {run['version']} (MLflow run {run['run_id']})")
    print(f"  training run:     {run['link']}")
    print(f"  synthetic images: {out_dir} (manifest.json beside them)")
    print(f"  MLflow store:     {ROOT / '.histosynth' / 'mlflow.db'}  ->  mlflow ui --backend-store-uri sqlite:///.histosynth/mlflow.db")
    print(f"  data lineage:     dvc.lock, remote {ROOT / '.histosynth' / 'dvc-remote'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
