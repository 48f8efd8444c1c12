"""`make demo`: the whole product on one machine with embedded defaults, using the same commands a user types.

1. `dvc repro`: real sample images (from published wheels) -> tissue-segmented patches -> leakage-free splits,
   versioned with DVC and pushed to the project-local remote.
2. `histosynth pipeline run train`: the KFP pipeline through kfp.local (data -> train -> evaluate -> register
   -> export), tracked in the local SQLite MLflow store, under the demo's own model name.
3. `histosynth serve`: a real tritonserver with the registered generator; `histosynth synth` requests a batch
   over HTTP and writes PNGs; the server is stopped.
4. The truth about the result: FID, KID, precision and recall of the new version (from its MLflow run) beside
   the real-vs-real floor of this data and published numbers, the promotion gates' verdict (a dry run: no alias
   moves), and `real_vs_synthetic.png` (real test patches next to the served batch).

Re-runs keep what came before: each run writes `demo-output/<time>/` (`demo-output/latest` points at the newest),
and the demo never moves a `candidate` alias that someone else set or that also carries another alias (it uses a
new alias instead, and says so).

Environment: DEMO_PRESET (default configs/dcgan-samples.yaml), DEMO_N (images, default 64), DEMO_PORT (Triton
HTTP port; gRPC and metrics take the next two; default 8000, or free ports when those are taken).
"""

from __future__ import annotations

import json
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
MODEL = "histosynth-demo"  # not the pipeline's default name: the demo never touches a model a user trains
ALIAS = "candidate"
ALIAS_TAG = "histosynth.demo.alias_version"  # registered-model tag: the version the demo last pointed ALIAS at
DEFAULT_PORT = 8000
# Context for the numbers: this sample data's val split vs its test split (213 vs 213 patches, FID Inception
# features), what two real sets of this size score against each other; no generator can be expected to do better.
REAL_FLOOR = {"fid": 95.8, "kid": 0.0031, "n": 213}
# The primary paper's Table 1 (BACH breast histology, 50k samples): a different data set, not comparable one-to-one.
PAPER_FID = {"DCGAN": 57.45, "RL-EO": 44.04}


def step(title: str) -> None:
    print(f"\n\033[1;36m==> {title}\033[0m", flush=True)


def sh(*args: str) -> None:
    print("$ " + " ".join(args), flush=True)
    subprocess.run(list(args), cwd=ROOT, check=True)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def any_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_ports(env: dict[str, str]) -> tuple[int, int, int]:
    """(HTTP, gRPC, metrics) ports: DEMO_PORT and the next two, which must be free; without DEMO_PORT 8000-8002,
    each replaced by a free port when taken."""
    from histosynth.errors import HistosynthError

    raw = env.get("DEMO_PORT", "")
    if not raw:
        return tuple(p if port_free(p) else any_free_port() for p in range(DEFAULT_PORT, DEFAULT_PORT + 3))  # type: ignore[return-value]
    if not raw.isdigit() or not 1 <= int(raw) <= 65533:
        raise HistosynthError(f"DEMO_PORT={raw!r} is not a port number", "set DEMO_PORT to a number from 1 to 65533 (HTTP; gRPC and metrics use the next two)")
    ports = (int(raw), int(raw) + 1, int(raw) + 2)
    busy = [p for p in ports if not port_free(p)]
    if busy:
        raise HistosynthError(f"DEMO_PORT={raw}: port(s) {busy} already in use (Triton needs HTTP {ports[0]}, gRPC {ports[1]}, metrics {ports[2]})", "pick another DEMO_PORT, or leave it unset to use free ports")
    return ports


def new_run_dir(base: Path) -> Path:
    """A fresh ``base/<time>`` folder: earlier runs are never overwritten."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(100):
        run = base / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            run.mkdir(parents=True)
            return run
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run folder under {base} for {stamp}")


def point_latest(base: Path, run: Path) -> str | None:
    """Point ``base/latest`` at ``run``; -> why not, when ``latest`` is something the demo did not make."""
    latest = base / "latest"
    if latest.exists() and not latest.is_symlink():
        return f"{latest} is not the demo's link; left as it is"
    if latest.is_symlink():
        latest.unlink()
    latest.symlink_to(run.name, target_is_directory=True)
    return None


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


def choose_alias(client, model: str, wanted: str = ALIAS) -> tuple[str, str | None]:
    """-> (alias to set, why it is not ``wanted``). ``wanted`` is kept when free or last set by the demo on a
    version with no other alias; a version someone promoted or re-pointed keeps it, the demo takes a new alias."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(model, wanted)
    except MlflowException:
        return wanted, None  # no such model or alias yet
    others = sorted(a for a in (mv.aliases or []) if a != wanted)
    mine = (client.get_registered_model(model).tags or {}).get(ALIAS_TAG) == str(mv.version)
    if not others and mine:
        return wanted, None
    why = f"also carries {', '.join(others)}" if others else "was pointed there outside the demo"
    new = f"{wanted}-{time.strftime('%Y%m%d-%H%M%S')}"
    return new, f"{model}@{wanted} is version {mv.version}, which {why}: left there; this run's version gets '{new}'"


def candidate_metrics(client, model: str, alias: str) -> dict[str, object]:
    """Version, run and the evaluate step's test metrics (None when missing) of ``model@alias``."""
    from histosynth.registry.promote import find_metric

    mv = client.get_model_version_by_alias(model, alias)
    run = client.get_run(mv.run_id)
    found = {k: find_metric(run.data.metrics, key) for k, key in (("fid", "fid"), ("kid", "kid_mean"), ("precision", "precision"), ("recall", "recall"))}
    return {"version": int(mv.version), "run": run, **{k: (v[1] if v else None) for k, v in found.items()}}


def quality_lines(m: dict[str, object]) -> list[str]:
    """The candidate's numbers beside what they can be compared with."""

    def fmt(v, spec: str) -> str:
        return "not logged" if v is None else format(v, spec)

    paper = ", ".join(f"{k} {v}" for k, v in PAPER_FID.items())
    return [
        f"  FID       {fmt(m['fid'], '.1f'):>10}   real-vs-real floor of this data: {REAL_FLOOR['fid']} (val vs test, {REAL_FLOOR['n']} vs {REAL_FLOOR['n']})",
        f"  KID       {fmt(m['kid'], '.4f'):>10}   real-vs-real floor: {REAL_FLOOR['kid']}",
        f"  precision {fmt(m['precision'], '.3f'):>10}   (share of samples that look like real patches; 1 is best)",
        f"  recall    {fmt(m['recall'], '.3f'):>10}   (share of the real variety the samples cover; 1 is best)",
        f"  published: FID on BACH, primary paper Table 1: {paper} (different data and sample count: not comparable one-to-one)",
    ]


def write_comparison(synth_dir: Path, splits: Path, out: Path) -> Path:
    """``real_vs_synthetic.png``: as many real test patches (seeded pick) as synthetic images in ``synth_dir``."""
    import numpy as np
    from PIL import Image

    from histosynth.evaluation.diagnostics import real_vs_synthetic
    from histosynth.evaluation.suite import open_split

    files = [synth_dir / e["file"] for e in json.loads((synth_dir / "manifest.json").read_text())["images"]]
    store = open_split(splits, "test")
    n = min(len(files), len(store))
    idx = np.sort(np.random.RandomState(0).choice(len(store), n, replace=False))
    synthetic = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files[:n]])
    return real_vs_synthetic(np.asarray(store.images[idx]), synthetic, out, labels=("real test patches", "synthetic, served by Triton"))


def promotion_verdict(version: int) -> list[str]:
    """The promotion gates on ``version`` as a dry run: nothing moves, nothing is recorded."""
    from histosynth.cli.progress import phases
    from histosynth.errors import HistosynthError
    from histosynth.registry.promote import promote

    try:
        with phases() as progress:
            result = promote(MODEL, version, dry_run=True, progress=progress)
    except HistosynthError as e:
        return [f"  gates could not run: {e.problem}" + (f" (fix: {e.hint})" if e.hint else "")]
    lines = [f"  {'pass' if g.passed else 'FAIL'} {g.name:<13} {g.detail}" for g in result.gates]
    verdict = "would be promoted" if result.passed else f"would be REFUSED ({', '.join(g.name for g in result.failed())})"
    return lines + [f"  verdict: {MODEL} v{version} {verdict} to 'champion' (dry run: no alias moved)"]


def run() -> int:
    from mlflow import MlflowClient

    from histosynth import defaults, tracking

    t0 = time.perf_counter()
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    preset = os.environ.get("DEMO_PRESET", "configs/dcgan-samples.yaml")
    n = os.environ.get("DEMO_N", "64")
    http, grpc, metrics = demo_ports(dict(os.environ))
    uri = defaults.mlflow_tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    alias, alias_note = choose_alias(client, MODEL)
    base = ROOT / "demo-output"
    out_dir = new_run_dir(base)
    if alias_note:
        print(f"\033[1;33mnote:\033[0m {alias_note}", flush=True)

    step("1/4 versioned sample data: dvc repro && dvc push")
    sh("dvc", "repro")
    sh("dvc", "push")

    step(f"2/4 training pipeline on kfp.local ({preset})")
    sh(str(BIN / "histosynth"), "pipeline", "run", "train", "--config", preset, "--data-repo", ".", "--model-name", MODEL, "--alias", alias)
    version = int(client.get_model_version_by_alias(MODEL, alias).version)
    if alias == ALIAS:
        client.set_registered_model_tag(MODEL, ALIAS_TAG, str(version))

    step("3/4 serve the registered generator from tritonserver and request a batch")
    serve = [str(BIN / "histosynth"), "serve", "--name", MODEL, "--alias", alias, "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    print("$ " + " ".join(serve), flush=True)
    server = subprocess.Popen(serve, cwd=ROOT, start_new_session=True)
    synth_dir = out_dir / "synthetic"
    try:
        wait_ready(f"127.0.0.1:{http}", server)
        sh(str(BIN / "histosynth"), "synth", "--n", n, "--seed", "7", "--out", str(synth_dir), "--url", f"127.0.0.1:{http}", "--model", MODEL)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    grid = write_comparison(synth_dir, ROOT / "data" / "splits", out_dir / "real_vs_synthetic.png")
    latest_note = point_latest(base, out_dir)

    step(f"4/4 how good is it? {MODEL} v{version}: test-split metrics and the promotion gates")
    m = candidate_metrics(client, MODEL, alias)
    print("\n".join(quality_lines(m)))
    print("\n".join(promotion_verdict(version)))

    run_ = m["run"]
    print(f"\n\033[1;32mdemo finished in {time.perf_counter() - t0:.0f} s\033[0m")
    print(f"  registered model: {MODEL}@{alias} = version {version} (MLflow run {run_.info.run_id})")
    print(f"  training run:     {tracking.run_link(uri, run_.info.experiment_id, run_.info.run_id)}")
    print(f"  synthetic images: {synth_dir} (manifest.json beside them)")
    print(f"  real vs synthetic: {grid}")
    if latest_note:
        print(f"  note: {latest_note}")
    print(f"  MLflow store:     {ROOT / '.histosynth' / 'mlflow.db'}  ->  mlflow ui --backend-store-uri sqlite:///.histosynth/mlflow.db")
    print(f"  data lineage:     dvc.lock, remote {ROOT / '.histosynth' / 'dvc-remote'}")
    return 0


def main() -> int:
    """User errors (a busy DEMO_PORT, ...) as 'error: ... / fix: ...' and exit 2, like the CLI."""
    from histosynth.errors import HistosynthError

    try:
        return run()
    except HistosynthError as e:
        print(f"error: {e.problem}", file=sys.stderr)
        if e.hint:
            print(f"fix: {e.hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
