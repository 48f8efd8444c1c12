"""`histosynth serve`: build a Triton model repository for a generator and run tritonserver on it."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Optional

import typer

from histosynth.cli import app
from histosynth.cli.common import out
from histosynth.errors import HistosynthError, ServerError

# Explicit model control: every model in the repository is loaded at start, and `--reload`/`--watch` swap versions
# through the load API without a restart.
EXPLICIT_MODE = ["--model-control-mode=explicit", "--load-model=*"]


@app.command()
def serve(
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Registered model to serve (exported to ONNX if needed)."),
    version: Optional[int] = typer.Option(None, "--version", "-v", help="Model version (default: the latest)."),
    alias: Optional[str] = typer.Option(None, "--alias", "-a", help="Model alias instead of a version."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", "-b", help="Serve a generator.pt directly (model name: --model-name, version 1)."),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="Name of the model in Triton (default: the registered name, or 'generator')."),
    repo: Optional[Path] = typer.Option(None, "--repo", help="Model repository folder (default: $HISTOSYNTH_HOME/triton/<variant>). Without --name/--bundle an existing repository is served as is."),
    http_port: int = typer.Option(8000, "--http-port"),
    grpc_port: int = typer.Option(8001, "--grpc-port"),
    metrics_port: int = typer.Option(8002, "--metrics-port", help="Prometheus metrics at http://HOST:PORT/metrics."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0 for every interface)."),
    max_batch: int = typer.Option(64, "--max-batch", help="max_batch_size of the model config."),
    queue_delay_us: int = typer.Option(2000, "--queue-delay-us", help="Dynamic batching: max queue delay in microseconds (0 disables dynamic batching)."),
    instances: int = typer.Option(1, "--instances", help="Model instances (processes for the local variant)."),
    device: str = typer.Option("cpu", "--device", help="Local variant: onnxruntime device cpu, cuda or auto."),
    variant: str = typer.Option("local", "--variant", help="local (python backend, this tritonserver) or production (onnxruntime_onnx on GPU, NGC image; build only)."),
    build_only: bool = typer.Option(False, "--build-only", help="Build the repository and exit."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait for the server to become ready."),
    reload: bool = typer.Option(False, "--reload", help="Do not start a server: rebuild --name at --version/--alias (e.g. champion) into --repo and load it on the running server at --url (explicit model control)."),
    url: Optional[str] = typer.Option(None, "--url", help="--reload: the running server's HTTP host:port (default HOST:HTTP_PORT)."),
    watch: float = typer.Option(0.0, "--watch", help="While serving --name --alias, check the alias every SECONDS and load the version it points at (0: off)."),
) -> None:
    """Serve a generator from Triton (HTTP, gRPC, metrics) until Ctrl-C / SIGTERM."""
    from histosynth import defaults
    from histosynth.serving import DynamicBatching, TritonServer, prepare_model
    from histosynth.serving.server import ENV_BINARY

    if variant not in ("local", "production"):
        raise HistosynthError(f"unknown variant '{variant}'", "use local or production")
    if version is not None and alias:
        raise HistosynthError("pass --version or --alias, not both")
    if name and bundle:
        raise HistosynthError("pass --name or --bundle, not both")
    repo_dir = repo or defaults.paths().home / "triton" / variant
    batching = DynamicBatching(max_queue_delay_us=queue_delay_us, enabled=queue_delay_us > 0)
    build = dict(variant=variant, max_batch_size=max_batch, dynamic_batching=batching, instance_count=instances, device=device)
    if reload:
        from histosynth.serving.reload import reload_model

        if not name:
            raise HistosynthError("--reload needs --name NAME (with --alias champion or --version N)")
        target = url or f"{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{http_port}"
        info = reload_model(target, repo_dir, name, version=version, alias=alias, model_name=model_name, timeout=timeout, **build)
        out.print(f"[bold green]loaded[/] {info['model_name']} version {info['version']} on {target} (served before: {', '.join(info['previous']) or 'none'})", soft_wrap=True)
        return
    if name or bundle:
        res = prepare_model(repo_dir, name=name, version=version, alias=alias, bundle=bundle, model_name=model_name, **build)
        out.print(f"[bold green]repository[/] {repo_dir}  model {res['model_name']} version {res['version']} ({variant}; ONNX parity {res['report']['max_abs_diff']:.1e})", soft_wrap=True)
    elif not repo_dir.is_dir():
        raise HistosynthError(f"no model repository at '{repo_dir}'", "pass --name NAME (a registered model) or --bundle PATH to build one")
    if build_only:
        if variant == "production":
            out.print(f"  run on a GPU node: docker run --gpus all --shm-size=1g -p8000:8000 -p8001:8001 -p8002:8002 -v {repo_dir.absolute()}:/models nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models")
        return
    if variant == "production" and not os.environ.get(ENV_BINARY):
        raise HistosynthError(
            "the production repository (onnxruntime_onnx) needs Triton's onnxruntime backend, which the nvidia-pytriton binary lacks",
            f"use --build-only and run it in the NGC tritonserver image, or set {ENV_BINARY} to a tritonserver that has the onnxruntime backend",
        )
    server = TritonServer(repo_dir, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, host=host, workdir=defaults.paths().home / "triton" / "run", extra_args=EXPLICIT_MODE)

    def _term(signum, frame):  # SIGTERM (kubectl delete, docker stop) ends like Ctrl-C
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _term)
    try:
        server.start()
        server.wait_ready(timeout=timeout)
        models = sorted(p.name for p in repo_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        out.print(f"[bold green]tritonserver ready[/] models: {', '.join(models)}")
        out.print(f"  http     {server.http_url}    grpc {server.grpc_url}", soft_wrap=True)
        out.print(f"  metrics  {server.metrics_url}", soft_wrap=True)
        out.print(f"  log      {server.log_path}", soft_wrap=True)
        out.print(f"  try      histosynth synth --n 16 --seed 0 --out samples/ --url {server.http_url} --model {models[0]}", soft_wrap=True)
        out.print("  Ctrl-C to stop")
        if watch > 0 and name and alias:
            from histosynth.serving.reload import watch_alias

            out.print(f"  watching {name}@{alias} every {watch:g} s")
            watch_alias(server.http_url, repo_dir, name, alias, interval=watch, should_stop=lambda: not server.running(), model_name=model_name,
                        on_reload=lambda i: out.print(f"[bold green]loaded[/] {i['model_name']} version {i['version']} (was {', '.join(i['previous']) or 'none'})"), **build)
        server.wait()
        # No restart loop here: a crash-looping server would hide its cause; the supervisor (Kubernetes, systemd)
        # that runs `serve` restarts it, and a user at a terminal sees why it stopped.
        raise ServerError(
            f"tritonserver {server.exit_reason()} while serving; histosynth serve stops with it. Last log lines:\n{server.log(8)}",
            f"a SIGKILL is usually the out-of-memory killer (see `dmesg`) or a kill -9: free memory or lower --instances/--max-batch, "
            f"then start histosynth serve again (under Kubernetes or systemd the supervisor restarts it); full log: {server.log_path}",
        )
    except KeyboardInterrupt:
        out.print("stopping tritonserver...")
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
