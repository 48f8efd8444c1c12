"""`histosynth pipeline run|compile`: the KFP pipelines in ``pipelines/``, run locally or compiled for Kubeflow.

A pipeline is imported from the project root as ``pipelines.<name>_pipeline`` (with ``components``, both packages
there), as ``python -m`` would from that folder; the library itself never imports KFP.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Optional

import typer

from histosynth import defaults
from histosynth.cli import app
from histosynth.cli.common import ForceOpt, out
from histosynth.errors import HistosynthError
from histosynth.evaluation.config import STAGE_DEFAULTS, EvalConfig
from histosynth.files.outputs import check_file

pipeline_app = typer.Typer(no_args_is_help=True, help="Run a KFP pipeline locally (kfp.local) or compile it for Kubeflow.")
app.add_typer(pipeline_app, name="pipeline")

ENV_PIPELINES = "HISTOSYNTH_PIPELINES"


def pipelines_dir() -> Path:
    """``$HISTOSYNTH_PIPELINES``, else the project's pipelines/ (from any subfolder), else ./pipelines."""
    return Path(os.environ.get(ENV_PIPELINES) or (defaults.project_root() or Path.cwd()) / "pipelines").absolute()


def load_pipeline(name: str) -> ModuleType:
    """``pipelines/<name>_pipeline.py`` (or ``<name>.py``) as a module exposing ``PIPELINE`` and ``compile_to``,
    imported as ``<folder>.<file>`` with the folder's parent (the project root) first on ``sys.path``."""
    folder = pipelines_dir()
    for candidate in (folder / f"{name}_pipeline.py", folder / f"{name}.py"):
        if candidate.is_file():
            root = str(folder.parent)
            if root not in sys.path:
                sys.path.insert(0, root)
            return importlib.import_module(f"{folder.name}.{candidate.stem}")
    found = sorted(p.stem.removesuffix("_pipeline") for p in folder.glob("*_pipeline.py")) if folder.is_dir() else []
    raise HistosynthError(
        f"no pipeline '{name}' in {folder}",
        f"run from the project root or set {ENV_PIPELINES}; available: {', '.join(found) or 'none'}",
    )


def run_local(name: str, arguments: dict, pipeline_root: Path, runner: str = "subprocess") -> dict[str, object]:
    """Run a pipeline with kfp.local; -> {output name: artifact path or value}. ``runner``: ``subprocess`` (steps
    in subprocesses of this Python) or ``docker`` (each step in its container image, :func:`docker_runner`).
    Arguments the pipeline does not take are left out (the CLI's options cover every pipeline). The executor's
    own chatter goes to the debug log (``histosynth.cli.kfp_output``)."""
    from kfp import local

    from histosynth.cli.kfp_output import quiet_local_run

    module = load_pipeline(name)
    accepted = set(module.PIPELINE.component_spec.inputs or {})
    pipeline_root.mkdir(parents=True, exist_ok=True)
    chosen = docker_runner(arguments) if runner == "docker" else local.SubprocessRunner(use_venv=False)
    local.init(runner=chosen, pipeline_root=str(pipeline_root))
    with quiet_local_run():
        task = module.PIPELINE(**{k: v for k, v in arguments.items() if k in accepted})
    outputs: dict[str, object] = {}
    for key, value in (task.outputs or {}).items():
        outputs[key] = getattr(value, "path", value)
    return outputs


ENV_STEP_IMAGE = "HISTOSYNTH_STEP_IMAGE"  # components.images: one image for every step
LOCAL_IMAGE = "localhost/histosynth-python-local:0.1.0"  # what `make images` builds for container runs


def docker_runner(arguments: dict):
    """kfp.local's DockerRunner on the engine at ``DOCKER_HOST`` (podman's ``podman system service`` works). It
    mounts only the pipeline root, so what the steps read or write on this machine is bind-mounted at the same
    path: the state folder (MLflow store and artifacts, DVC remote), the cache (weights), a local data repo
    (read-only) and a file MLflow store's folder. Steps run as this user, on the host network (an MLflow server)."""
    import docker
    from docker.types import Mount
    from kfp import local

    try:
        docker.from_env().ping()
    except Exception as e:  # noqa: BLE001 - no socket, refused, not an engine: all mean "no engine here"
        raise HistosynthError(
            f"no Docker-compatible engine answers at DOCKER_HOST={os.environ.get('DOCKER_HOST', '(unset: unix:///var/run/docker.sock)')}: {e}",
            "start podman's: `podman system service --time=0 unix:///tmp/podman.sock &` then `export DOCKER_HOST=unix:///tmp/podman.sock` (or start Docker)",
        ) from e
    p = defaults.paths()
    p.home.mkdir(parents=True, exist_ok=True)
    p.cache.mkdir(parents=True, exist_ok=True)
    writable = {p.home.absolute(), p.cache.absolute()}
    uri = str(arguments.get("tracking_uri", ""))
    if uri.startswith("sqlite:///"):
        writable.add(Path(uri.removeprefix("sqlite:///")).absolute().parent)
    elif uri.startswith("file:"):
        writable.add(Path(uri.removeprefix("file://").removeprefix("file:")).absolute())
    repo = Path(str(arguments.get("data_repo") or ""))
    read_only = {repo.absolute()} if str(repo) not in ("", ".") and repo.is_dir() else set()
    # parents before the folders inside them (a writable state folder inside a read-only project)
    mounts = [Mount(str(d), str(d), type="bind", read_only=d in read_only) for d in sorted(writable | read_only, key=lambda d: len(d.parts))]
    env = {defaults.ENV_HOME: str(p.home.absolute()), defaults.ENV_CACHE: str(p.cache.absolute()), "HOME": "/tmp"}
    # entrypoint [""]: the images' ENTRYPOINT (histosynth) would otherwise prefix the step's command
    return local.DockerRunner(network_mode="host", user=f"{os.getuid()}:{os.getgid()}", mounts=mounts, environment=env, entrypoint=[""])


def _json_object(text: str, flag: str) -> dict:
    try:
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("not an object")
    except ValueError as e:
        raise HistosynthError(f"{flag} is not a JSON object: {e}", 'write it like \'{"epochs": 1, "folds": 2}\'') from e
    return value


def _compiled_yaml(path: Path) -> bool:
    """KFP's compiler starts every IR YAML with this line."""
    with open(path, "rb") as f:
        return f.readline().startswith(b"# PIPELINE DEFINITION")


@pipeline_app.command("compile")
def compile_(
    name: str = typer.Argument("train", help="Pipeline name (pipelines/<name>_pipeline.py)."),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="IR YAML path (default build/<name>-pipeline.yaml)."),
    force: bool = ForceOpt,
) -> None:
    """Compile to IR YAML for upload in the Kubeflow Pipelines UI."""
    target = check_file(output or Path("build") / f"{name}-pipeline.yaml", ours=_compiled_yaml, force=force, flag="-o")
    path = load_pipeline(name).compile_to(target)
    out.print(f"compiled [bold]{name}[/] -> {path}")


@pipeline_app.command("run")
def run(
    name: str = typer.Argument("train", help="Pipeline name (pipelines/<name>_pipeline.py)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="GAN preset passed to the pipeline (default: the pipeline's own, e.g. configs/dcgan-samples.yaml)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", "-s", help="Override a training value: section.key=value."),
    snn_config: Optional[Path] = typer.Option(None, "--snn-config", help="rl_eo: MFT-SNN preset (default configs/mft-snn-samples.yaml)."),
    snn_set: Optional[list[str]] = typer.Option(None, "--snn-set", help="rl_eo: override an MFT-SNN value: section.key=value."),
    rl_eo_mode: Optional[str] = typer.Option(None, "--rl-eo-mode", help="rl_eo: how the reward enters D's loss: paper (as written, no gradient), weighted, soft-label."),
    data_repo: str = typer.Option(".", help="DVC repo with the versioned splits ('' builds the sample data inside the run)."),
    data_rev: str = typer.Option("", help="Git revision of the data (default: the working tree / HEAD)."),
    model_name: Optional[str] = typer.Option(None, help="Registered model name in MLflow (default: the pipeline's, e.g. histosynth-dcgan)."),
    alias: str = typer.Option("candidate", help="Alias set on the new model version."),
    eval_n_fake: int = typer.Option(STAGE_DEFAULTS.n_fake, help="Generated images for evaluation (0: as many as the real test split)."),
    eval_extractor: str = typer.Option(STAGE_DEFAULTS.extractor, help="Feature extractor for the metrics."),
    eval_metrics: str = typer.Option(STAGE_DEFAULTS.metrics, help="Comma-separated metrics."),
    eval_tstr: str = typer.Option(STAGE_DEFAULTS.tstr, help="Downstream TSTR: off, on, auto (only class-conditional generators)."),
    eval_tstr_options: Optional[str] = typer.Option(None, help='TSTR settings as JSON, e.g. \'{"epochs": 1, "folds": 2}\' (default: the pipeline\'s cheap local set-up; \'{}\': the paper\'s).'),
    eval_diagnostics: bool = typer.Option(STAGE_DEFAULTS.tsne, help="t-SNE and the nearest-real-neighbour grid."),
    pipeline_root: Optional[Path] = typer.Option(None, help="Where step outputs are kept (default <state>/pipeline-runs)."),
    nproc_per_node: int = typer.Option(1, help="Training processes (DDP): more than 1 runs the train step under torchrun."),
    runner: str = typer.Option("subprocess", help=f"subprocess: steps in subprocesses of this Python; docker: each step in a container ({LOCAL_IMAGE} from `make images`, or ${ENV_STEP_IMAGE}) on the engine at $DOCKER_HOST (e.g. podman system service)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the pipeline arguments and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show the KFP executor's log (executor input JSON) and the settings kfp.local ignores (or HISTOSYNTH_LOG=debug)."),
) -> None:
    """Run the pipeline locally with kfp.local: same components, same code as on the cluster."""
    from histosynth.cli.kfp_output import configure_log

    configure_log(verbose)
    if runner not in ("subprocess", "docker"):
        raise HistosynthError(f"--runner {runner} is not a kfp.local runner here", "use --runner subprocess (default) or --runner docker")
    if runner == "docker":
        os.environ.setdefault(ENV_STEP_IMAGE, LOCAL_IMAGE)  # before the components are imported: they read it
    from histosynth.config import load_config
    from histosynth.config.snn import load_snn_config

    module = load_pipeline(name)
    accepted = set(module.PIPELINE.component_spec.inputs or {})
    presets = getattr(module, "PRESETS", {})
    config = config or presets.get("config_yaml")
    if config is None:
        raise HistosynthError(f"pipeline '{name}' has no default preset", "pass --config configs/<preset>.yaml")
    # a pipeline of another kind of preset (search) brings its own resolver: preset path, overrides -> YAML text
    resolve = getattr(module, "resolve_config", None) or (lambda path, overrides: load_config(path, overrides).to_yaml())
    resolve(config, [*(set_ or []), *([f"rl_eo.mode={rl_eo_mode}"] if rl_eo_mode else [])])  # fail fast on a bad preset/override, before any step runs
    arguments = {"config_yaml": resolve(config, []), "overrides": list(set_ or [])}  # resolved: steps need no configs/
    if "snn_config_yaml" in accepted:
        snn_config = snn_config or presets["snn_config_yaml"]
        load_snn_config(snn_config, snn_set or [])
        arguments.update(snn_config_yaml=load_snn_config(snn_config).to_yaml(), snn_overrides=list(snn_set or []))
        if rl_eo_mode:
            arguments["rl_eo_mode"] = rl_eo_mode
    elif snn_config or snn_set or rl_eo_mode:
        raise HistosynthError(f"pipeline '{name}' trains no MFT-SNN: --snn-config/--snn-set/--rl-eo-mode do not apply", "use them with `histosynth pipeline run rl_eo`")
    if data_repo and data_repo != "." and not data_repo.startswith(("http://", "https://", "git@", "ssh://")):
        data_repo = str(Path(data_repo).absolute())
    elif data_repo == ".":
        data_repo = str(defaults.project_root() or Path.cwd())
    arguments.update(
        data_repo=data_repo,
        data_rev=data_rev,
        tracking_uri=defaults.mlflow_tracking_uri(),
        alias=alias,
        nproc_per_node=nproc_per_node,
    )
    if model_name:
        arguments["model_name"] = model_name
    if "eval_config" in accepted:
        evaluation = {"n_fake": eval_n_fake, "extractor": eval_extractor, "metrics": eval_metrics, "tstr": eval_tstr, "tsne": eval_diagnostics, "knn": STAGE_DEFAULTS.knn if eval_diagnostics else 0}
        if eval_tstr_options is not None:
            evaluation["tstr_options"] = _json_object(eval_tstr_options, "--eval-tstr-options")
        base = EvalConfig.from_dict(module.PIPELINE.component_spec.inputs["eval_config"].default, base=STAGE_DEFAULTS)
        arguments["eval_config"] = EvalConfig.from_dict(evaluation, base=base).to_dict()
    arguments = {k: v for k, v in arguments.items() if k in accepted}
    registers = "model_name" in accepted
    model_name = model_name or (module.PIPELINE.component_spec.inputs["model_name"].default if registers else "")
    if dry_run:
        out.print_json(json.dumps(arguments))
        return
    root = pipeline_root or defaults.paths().home / "pipeline-runs" / time.strftime("%Y%m%d-%H%M%S")
    t0 = time.perf_counter()
    outputs = run_local(name, arguments, root.absolute(), runner)
    out.print(f"[green]pipeline '{name}' finished[/] in {time.perf_counter() - t0:.0f} s; outputs under {root}")
    for key, value in outputs.items():
        out.print(f"  {key}: {value}")
    out.print(f"  MLflow: {arguments['tracking_uri']}" + (f" (model '{model_name}', alias '{alias}')" if registers else ""))
    sys.stdout.flush()
