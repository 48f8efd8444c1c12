"""Pipeline stages as plain functions over paths and strings.

Each KFP component (``components/``) is a thin wrapper around one of these, so the same code runs from the
CLI, from ``kfp.local`` and on a cluster. Nothing here knows about KFP, Docker or Kubernetes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from histosynth import distributed
from histosynth.config.snn import SnnConfig, load_snn_config
from histosynth.data.split import REPORT, SPLITS
from histosynth.errors import ConfigError, DataError, HistosynthError
from histosynth.evaluation.config import STAGE_DEFAULTS, EvalConfig
from histosynth.files.atomic import swap_in, temp_beside
from histosynth.files.outputs import check_dir
from histosynth.snn.mft_snn import FILENAME as SNN_FILENAME


def prepare_splits(
    out_dir: str | Path,
    data_repo: str = "",
    data_rev: str = "",
    data_path: str = "data/splits",
    patch: dict[str, Any] | None = None,
    split: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Materialise train/val/test patch stores in ``out_dir``.

    With ``data_repo`` (a Git URL or a local checkout), the DVC-versioned ``data_path`` at ``data_rev`` is
    fetched from that repository's DVC remote (``dvc get``): the data a run sees is pinned by a Git revision.
    Without it, the embedded sample dataset is built from scratch (samples -> patches -> splits).
    """
    out = Path(out_dir)
    check_dir(out, marker=REPORT, names=SPLITS)
    if data_repo:
        from dvc.repo import Repo

        tmp = temp_beside(out)
        try:
            Repo.get(data_repo, data_path, out=str(tmp / out.name), rev=data_rev or None)
            swap_in(tmp / out.name, out)
        except Exception as e:  # noqa: BLE001 - DVC raises many kinds; all mean "could not fetch"
            raise DataError(
                f"could not fetch '{data_path}' from DVC repo '{data_repo}' (rev {data_rev or 'HEAD'}): {e}",
                "check the repo URL/revision, that `dvc push` ran, and that the DVC remote is reachable",
            ) from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        from histosynth.data.patches import build_patches
        from histosynth.data.samples import fetch_samples
        from histosynth.data.split import split_store

        with tempfile.TemporaryDirectory(prefix="histosynth-data-") as work:
            raw, patches = Path(work) / "raw", Path(work) / "patches"
            fetch_samples(raw, progress=False)
            build_patches(raw, patches, **(patch or {}), progress=False)
            split_store(patches, out, **(split or {}), progress=False)
    report_path = out / REPORT
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    from histosynth.data.store import PatchStore

    counts = {s: len(PatchStore(out / s)) for s in ("train", "val", "test") if (out / s / "manifest.json").is_file()}
    if not counts.get("train"):
        raise DataError(f"'{out}' holds no train split", "point data_path at the output of `histosynth data split`")
    return {"counts": counts, "classes": PatchStore(out / "train").classes, "report": report}


def train_stage(
    splits_dir: str | Path,
    config_yaml: str,
    overrides: list[str],
    tracking_uri: str,
    bundle_out: str | Path,
    snn: str | Path = "",
    rl_eo_mode: str = "",
    nproc: int = 1,
) -> dict[str, Any]:
    """Train from a preset given as YAML text (pipelines carry it as a parameter) on ``splits_dir``.

    ``snn``: a trained MFT-SNN (snn.pt or its folder) for RL-EO; it switches the reward on (``rl_eo.enabled``).
    ``rl_eo_mode``: how the reward enters D's loss (``rl_eo.mode``; empty: the preset's).
    ``nproc``: training processes on this machine; 1 trains in this process, more launch :func:`torchrun_train`."""
    from histosynth.config import load_config
    from histosynth.gan.train.trainer import train

    extra = [f"data.root={Path(splits_dir).absolute()}"]
    if snn:
        path = Path(snn) / SNN_FILENAME if Path(snn).is_dir() else Path(snn)
        extra += ["rl_eo.enabled=true", f"rl_eo.snn={path.absolute()}"]
    if rl_eo_mode:
        extra.append(f"rl_eo.mode={rl_eo_mode}")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(config_yaml)
    try:
        cfg = load_config(f.name, [*overrides, *extra])
    finally:
        Path(f.name).unlink()
    if tracking_uri:
        cfg.tracking.tracking_uri = tracking_uri
    if nproc < 1:
        raise ConfigError(f"nproc={nproc}: at least one training process is needed", "pass nproc=1 (this process) or more (torchrun)")
    result = train(cfg, progress=False).to_dict() if nproc == 1 else torchrun_train(cfg.to_yaml(), nproc)
    if distributed.current().is_main:  # under torchrun every rank returns rank 0's result; one copies it
        bundle = Path(result["bundle"])
        dest = Path(bundle_out)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(bundle, dest / bundle.name)
    return result


def torchrun_train(config_yaml: str, nproc: int) -> dict[str, Any]:
    """``torchrun --standalone --nproc-per-node nproc -m histosynth train`` on a resolved preset, as a subprocess
    (torchrun starts the processes and sets their ranks; rank 0 tracks the run and writes the result read back here).
    torchrun is run as ``python -m torch.distributed.run`` (the same program) so it uses this interpreter."""
    with tempfile.TemporaryDirectory(prefix="histosynth-torchrun-") as work:
        config, result = Path(work) / "config.yaml", Path(work) / "result.json"
        config.write_text(config_yaml)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "histosynth"]
        cmd += ["train", f"--config={config}", f"--result-json={result}", "--no-progress"]
        code = subprocess.run(cmd, check=False).returncode
        if code != 0 or not result.is_file():
            raise HistosynthError(
                f"torchrun with {nproc} process(es) failed (exit {code}){'' if code else ' without writing its result'}: {' '.join(cmd)}",
                "read the processes' log above; rerun with nproc=1 to train in one process",
            )
        return json.loads(result.read_text())


def evaluate_stage(
    bundle_dir: str | Path,
    splits_dir: str | Path,
    run_id: str,
    tracking_uri: str,
    out_jsonl: str | Path,
    config: EvalConfig | Mapping[str, Any] | None = None,
    artifacts_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Metrics, TSTR, diagnostics and the report, all logged to ``run_id``. ``config``: an ``EvalConfig``, or a dict
    of its fields (a pipeline parameter) over :data:`~histosynth.evaluation.config.STAGE_DEFAULTS`. The report is
    always written: the pipeline step publishes its HTML."""
    from histosynth.evaluation.suite import evaluate_generator

    cfg = config if isinstance(config, EvalConfig) else EvalConfig.from_dict(config, base=STAGE_DEFAULTS)
    return evaluate_generator(
        bundle_dir, splits_dir, cfg, report=True, out_jsonl=out_jsonl, mlflow_run_id=run_id or None, tracking_uri=tracking_uri, artifacts_dir=artifacts_dir
    )


def register_stage(run_id: str, name: str, alias: str, tracking_uri: str, tags: dict[str, str] | None = None) -> dict[str, Any]:
    from histosynth.registry import model_version_info, register_generator

    mv = register_generator(None, name, run_id=run_id, alias=alias or None, tracking_uri=tracking_uri, tags=tags)
    return model_version_info(mv)


def export_stage(name: str, version: str, tracking_uri: str, out_dir: str | Path) -> dict[str, Any]:
    from histosynth.export.onnx import export_registered

    report = export_registered(name, version=version, out_dir=out_dir, tracking_uri=tracking_uri)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in report.items()}


# MFT-SNN stages (components/snn.py)


def _from_text(load: Callable[[str | None, list[str]], Any], config_yaml: str, overrides: list[str]) -> Any:
    """``load`` (a preset loader taking a path) on a preset given as YAML text; empty text: the loader's defaults."""
    if not config_yaml.strip():
        return load(None, overrides)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(config_yaml)
    try:
        return load(f.name, overrides)
    finally:
        Path(f.name).unlink()


def _snn_config(config_yaml: str, overrides: list[str]) -> SnnConfig:
    return _from_text(load_snn_config, config_yaml, overrides)


def pairs_stage(splits_dir: str | Path, out_dir: str | Path, config_yaml: str = "", overrides: list[str] | None = None) -> dict[str, Any]:
    """Build the pairs folder from ``splits_dir`` into ``out_dir``; -> counts per split and kind."""
    from histosynth.snn.pairs import build_pairs

    cfg = _snn_config(config_yaml, list(overrides or []))
    m = build_pairs(cfg.pairs, root=str(Path(splits_dir).absolute()), out=str(out_dir))
    return {s: {"patch": e["patch"]["count"], "stage1": e["stage1"]["count"], "mosaics": e["mosaics"]["count"]} for s, e in m["splits"].items()}


def train_snn_stage(
    pairs_dir: str | Path,
    splits_dir: str | Path,
    config_yaml: str,
    overrides: list[str],
    stage: int | str,
    init_bundle: str | Path,
    tracking_uri: str,
    bundle_out: str | Path,
) -> dict[str, Any]:
    """Train stage 1, 2 (from ``init_bundle``: an snn.pt or its folder) or 'single'; copy snn.pt to ``bundle_out``."""
    from histosynth.registry.snn import register_trained
    from histosynth.snn.train import train_snn

    init = Path(init_bundle) if init_bundle else None
    if init is not None and init.is_dir():
        init = init / SNN_FILENAME
    cfg = _snn_config(
        config_yaml,
        [*overrides, f"train.pairs={Path(pairs_dir).absolute()}", f"train.splits={Path(splits_dir).absolute()}", f"train.stage={stage}", f"train.init_from={init or ''}"],
    )
    if tracking_uri:
        cfg.tracking.tracking_uri = tracking_uri
    result = train_snn(cfg, progress=False)
    if distributed.current().is_main:  # under torchrun every rank returns rank 0's result; one registers and copies it
        register_trained(result, cfg.tracking.register_as)
        dest = Path(bundle_out)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(result.bundle, dest / SNN_FILENAME)
    return result.to_dict()


# GA-GAN search stages (components/search.py): every task reopens the same study from its storage URL, so the
# stages share nothing else (on a cluster: one pod each, the study in PostgreSQL).


def _search_config(splits_dir: str | Path, config_yaml: str, overrides: list[str], storage: str, tracking_uri: str):
    """The search preset (YAML text) on ``splits_dir``; ``storage``/``tracking_uri`` replace the preset's when set.
    Both stages always run: the pipeline has a fan-out for each."""
    from histosynth.search.config import load_search_config

    extra = [f"data_root={Path(splits_dir).absolute()}", "stages=g,d"]
    extra += [f"storage={storage}"] * bool(storage) + [f"tracking_uri={tracking_uri}"] * bool(tracking_uri)
    return _from_text(load_search_config, config_yaml, [*overrides, *extra])


def search_prepare_stage(splits_dir: str | Path, config_yaml: str, overrides: list[str], stage: str, storage: str = "", tracking_uri: str = "") -> dict[str, Any]:
    """Create (or reopen) ``stage``'s study and pin its partner network before any worker starts; also creates the
    MLflow experiment and the real-feature statistics once, so the workers do not race to make them.
    -> the study's name, target and trial counts."""
    from histosynth import tracking
    from histosynth.search import fitness
    from histosynth.search.driver import prepare_stage
    from histosynth.search.worker import counts, total_trials

    cfg = _search_config(splits_dir, config_yaml, overrides, storage, tracking_uri)
    tracking.configure(cfg.tracking_uri)
    tracking.ensure_experiment(cfg.experiment)
    fitness.load_data(cfg)
    study = prepare_stage(cfg, stage)
    return {"study": study.study_name, "target": total_trials(cfg), **counts(study)}


def search_worker_stage(
    splits_dir: str | Path, config_yaml: str, overrides: list[str], stage: str, worker_id: int, storage: str = "", tracking_uri: str = ""
) -> dict[str, Any]:
    """One worker of ``stage``: evaluates candidates until the stage has its ``population + cycles`` finished ones
    (with the other workers); -> how many this one ran and the final counts. ``worker_id`` only names it in logs."""
    from histosynth.search.worker import counts, open_study, run_worker

    cfg = _search_config(splits_dir, config_yaml, overrides, storage, tracking_uri)
    ran = run_worker(cfg, stage)
    return {"worker_id": int(worker_id), "stage": stage, "ran": ran, **counts(open_study(cfg, stage))}


def search_retrain_stage(splits_dir: str | Path, config_yaml: str, overrides: list[str], out_dir: str | Path, storage: str = "", tracking_uri: str = "") -> dict[str, Any]:
    """Retrain the winning pair from scratch (``retrain_steps``), logged to MLflow; copy its generator bundle (generator.pt) to ``out_dir``."""
    from histosynth.search.driver import retrain

    result = retrain(_search_config(splits_dir, config_yaml, overrides, storage, tracking_uri))
    dest = Path(out_dir)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(result["path"], dest / Path(result["path"]).name)
    return result
