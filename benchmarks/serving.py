"""Serving throughput and latency: Triton (HTTP, gRPC) vs in-process onnxruntime vs PyTorch eager.

Every backend gets the same work: requests of ``--batch`` latents (default 64) for the same generator
(default: a random-init 64 px DCGAN, features 64, latent 100 - the primary paper's size; weights do not change
the cost), returning uint8 images (B, H, W, 3). Each is run at each ``--concurrency`` level (default 1 and 4)
for ``--seconds`` after ``--warmup`` requests per thread, in ``--rounds`` rounds that interleave the backends; one client (or one thread on the shared session/module
for the in-process backends) per thread.

- ``triton-http`` / ``triton-grpc``: a real tritonserver (nvidia-pytriton's binary, python backend running
  onnxruntime on the exported ONNX, dynamic batching, 1 instance unless --instances), tritonclient per thread;
- ``onnxruntime``: one InferenceSession on the same ONNX file, shared by the threads;
- ``torch``: the PyTorch generator in eval mode under inference_mode, shared by the threads, + the same
  uint8 post-processing.

    .venv/bin/python benchmarks/serving.py                       # CPU, prints a markdown table
    .venv/bin/python benchmarks/serving.py --seconds 20 --json out.json
    .venv/bin/python benchmarks/serving.py --bundle path/to/generator.pt --backends triton-grpc onnxruntime
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

BACKENDS = ("triton-http", "triton-grpc", "onnxruntime", "torch")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_bundle(path: Path, image_size: int, features: int, latent: int) -> Path:
    import torch

    from histosynth.gan.bundle import save_generator
    from histosynth.gan.nets import build_generator, init_dcgan_weights

    spec = {"arch": "dcgan", "image_size": image_size, "latent_dim": latent, "g_features": features, "channels": 3, "num_classes": 0}
    torch.manual_seed(0)
    g = build_generator(spec)
    init_dcgan_weights(g)
    return save_generator(path, g, spec, [])


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of ``values``."""
    return float(np.percentile(np.asarray(values), q))


def run_load(make_worker, concurrency: int, seconds: float, warmup: int, batch: int) -> dict:
    """``make_worker()`` -> callable doing one request; each thread gets its own. -> img/s and latency stats."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[BaseException] = []
    warmed, go = threading.Barrier(concurrency + 1), threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def loop(i: int) -> None:
        try:
            worker = make_worker()  # in this thread: a tritonclient.http client is bound to the thread that made it
            for _ in range(warmup):  # first calls allocate / load kernels
                worker()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        warmed.wait()
        go.wait()
        try:
            while not errors and time.perf_counter() < stop_at[0]:
                t = time.perf_counter()
                worker()
                latencies[i].append(time.perf_counter() - t)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    warmed.wait()  # every thread has warmed up
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    go.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0  # includes the last requests that started before the deadline
    if errors:
        raise errors[0]
    lat = [x for per in latencies for x in per]
    return {
        "requests": len(lat),
        "images": len(lat) * batch,
        "wall_s": wall,
        "img_per_s": len(lat) * batch / wall,
        "p50_ms": percentile(lat, 50) * 1e3,
        "p99_ms": percentile(lat, 99) * 1e3,
        "mean_ms": statistics.fmean(lat) * 1e3,
        "latencies": lat,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, help="generator.pt to benchmark (default: random-init DCGAN)")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--latent", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--seconds", type=float, default=8.0, help="measured time per (backend, concurrency) per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over all backends (img/s: median of rounds; latency percentiles: pooled)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up requests per thread")
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    ap.add_argument("--instances", type=int, default=1, help="Triton model instances (python-backend processes)")
    ap.add_argument("--queue-delay-us", type=int, default=2000)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--workdir", type=Path, help="keep bundle/ONNX/repository/server log here (default: a temp dir)")
    args = ap.parse_args(argv)

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import onnxruntime as ort
    import torch

    from histosynth.gan.bundle import load_generator
    from histosynth.export.onnx import export_onnx
    from histosynth.serving import DynamicBatching, GeneratorClient, TritonServer, build_repository

    work = args.workdir or Path(tempfile.mkdtemp(prefix="histosynth-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    bundle = args.bundle or make_bundle(work / "bundle", args.image_size, args.features, args.latent)
    report = export_onnx(bundle, work / "onnx" / "model.onnx", batch_for_check=args.batch)
    onnx_path = Path(report["onnx_path"])
    spec = report["spec"]
    latent = spec["latent_dim"]
    z = np.random.default_rng(0).standard_normal((args.batch, latent), dtype=np.float32)
    print(f"generator: {spec['arch']} {spec['image_size']}px features {spec.get('g_features')} latent {latent}; batch {args.batch}; parity {report['max_abs_diff']:.1e}", flush=True)

    results: list[dict] = []
    server = None
    load_before = _loadavg()
    try:
        if any(b.startswith("triton") for b in args.backends):
            repo = work / "repo"
            build_repository(onnx_path, repo, "bench", 1, max_batch_size=max(64, args.batch), dynamic_batching=DynamicBatching((), args.queue_delay_us), instance_count=args.instances)
            server = TritonServer(repo, _port(), _port(), _port(), workdir=work / "server", extra_args=["--exit-timeout-secs=3"])
            server.start()
            server.wait_ready(timeout=120)

        makers = {}
        for backend in args.backends:
            if backend.startswith("triton"):
                protocol = backend.split("-")[1]
                url = server.http_url if protocol == "http" else server.grpc_url  # type: ignore[union-attr]

                def make_worker(protocol=protocol, url=url):
                    client = GeneratorClient(url, protocol, model="bench")  # one client per thread
                    return lambda: client.generate(z)

            elif backend == "onnxruntime":
                so = ort.SessionOptions()
                so.log_severity_level = 3
                sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])

                def make_worker(sess=sess):
                    return lambda: sess.run(["images_uint8"], {"z": z})

            else:
                gen, _ = load_generator(bundle, "cpu")
                zt = torch.from_numpy(z)

                def make_worker(gen=gen, zt=zt):
                    def once():
                        with torch.inference_mode():
                            x = gen(zt)
                            return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()

                    return once

            makers[backend] = make_worker

        # Rounds interleave the backends, so load drifting on a shared machine hits them all alike.
        per: dict[tuple[str, int], list[dict]] = {}
        for rnd in range(args.rounds):
            for backend in args.backends:
                for c in args.concurrency:
                    r = run_load(makers[backend], c, args.seconds, args.warmup, args.batch)
                    per.setdefault((backend, c), []).append(r)
                    print(f"round {rnd + 1}/{args.rounds} {backend:12s} c={c}: {r['img_per_s']:8.1f} img/s  p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  ({r['requests']} requests)", flush=True)
        for (backend, c), rs in per.items():
            lat = [x for r in rs for x in r["latencies"]]
            results.append(
                {
                    "backend": backend,
                    "concurrency": c,
                    "img_per_s": float(np.median([r["img_per_s"] for r in rs])),
                    "img_per_s_rounds": [round(r["img_per_s"], 1) for r in rs],
                    "p50_ms": percentile(lat, 50) * 1e3,
                    "p99_ms": percentile(lat, 99) * 1e3,
                    "requests": len(lat),
                }
            )
    finally:
        if server is not None:
            server.stop()

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": ort.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
    }
    print()
    print(f"CPU: {env['processor']} ({env['cpu_count']} cores visible); torch {env['torch']} ({env['torch_threads']} threads), onnxruntime {env['onnxruntime']}")
    print()
    print(f"load average before/after: {load_before} / {_loadavg()}")
    print()
    print("| backend | concurrency | img/s (median of rounds) | img/s per round | p50 latency (ms) | p99 latency (ms) | requests |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for r in results:
        rounds = ", ".join(f"{x:.0f}" for x in r["img_per_s_rounds"])
        print(f"| {r['backend']} | {r['concurrency']} | {r['img_per_s']:.0f} | {rounds} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['requests']} |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "env": env, "spec": spec, "results": results}, indent=2))
    return 0


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
