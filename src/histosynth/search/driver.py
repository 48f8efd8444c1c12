"""The search driver: creates each stage's study, starts the local workers, and reads the results back.

Stages run in order: ``g`` searches the generator against the fixed discriminator, ``d`` the discriminator against
the best generator (starting from its trained weights). The driver holds no state of its own: everything lives in
the study storage and the trial checkpoints, so killing it (or a worker) and running it again resumes the search.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

import histosynth
from histosynth import tracking
from histosynth.errors import HistosynthError
from histosynth.files.atomic import atomic_open
from histosynth.gan.bundle import save_generator
from histosynth.gan.nets.ga_gan import stages_for
from histosynth.gan.nets.ga_gan_genotype import Genotype
from histosynth.gan.train.runs import log_bundle
from histosynth.search import fitness
from histosynth.search.aging_evolution import GENOTYPE
from histosynth.search.config import SearchConfig
from histosynth.search.worker import PARTNER, PARTNER_CKPT, checkpoint_path, counts, open_study, study_name, total_trials

log = logging.getLogger("histosynth.search")


def write_config(cfg: SearchConfig) -> Path:
    """The settings every worker reads (``python -m histosynth.search.worker <root>/search.yaml STAGE``)."""
    path = cfg.root() / "search.yaml"
    with atomic_open(path) as f:
        f.write(yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
    return path


def prepare_stage(cfg: SearchConfig, stage: str) -> optuna.Study:
    """Create (or reopen) the stage's study and pin its partner network."""
    study = open_study(cfg, stage, create=True)
    if stage == "g":
        Genotype.parse(cfg.fixed_d, "d").check("d", stages_for(cfg.image_size))
        study.set_user_attr(PARTNER, cfg.fixed_d)
        study.set_user_attr(PARTNER_CKPT, None)
    else:
        g = best_trial(cfg, "g")
        if g is None or counts(open_study(cfg, "g"))["complete"] < total_trials(cfg):
            raise HistosynthError("the discriminator search needs a finished generator search", "run stage g first (stages=g,d), or let `histosynth search run` finish it")
        study.set_user_attr(PARTNER, g.user_attrs[GENOTYPE])
        study.set_user_attr(PARTNER_CKPT, str(checkpoint_path(cfg, "g", g.number)))
    return study


def run_search(cfg: SearchConfig, workers: int | None = None) -> dict[str, Any]:
    """Run (or resume) every stage with ``workers`` local worker processes each; returns :func:`best`."""
    workers = workers or cfg.workers
    config_path = write_config(cfg)
    tracking.configure(cfg.tracking_uri)
    tracking.ensure_experiment(cfg.experiment)  # created once here, not raced by the workers
    fitness.load_data(cfg)  # fills the real-feature cache once for all workers
    for stage in cfg.stage_list():
        study = prepare_stage(cfg, stage)
        if counts(study)["complete"] >= total_trials(cfg):
            continue
        procs = [subprocess.Popen([sys.executable, "-m", "histosynth.search.worker", str(config_path), stage], env=os.environ.copy()) for _ in range(workers)]
        log.info("stage %s: %d workers (pids %s) on %s", stage, workers, [p.pid for p in procs], cfg.storage_url())
        codes = [p.wait() for p in procs]
        if counts(study)["complete"] < total_trials(cfg):
            raise HistosynthError(f"stage {stage}: the workers stopped (exit codes {codes}) before {total_trials(cfg)} candidates finished", "see their log above, then run `histosynth search run` again: it resumes")
    return best(cfg)


def best_trial(cfg: SearchConfig, stage: str) -> optuna.trial.FrozenTrial | None:
    done = [t for t in open_study(cfg, stage).get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return min(done, key=lambda t: (t.value, t.number)) if done else None


def status(cfg: SearchConfig) -> dict[str, Any]:
    """Per stage: trial counts by state, target, and the best so far."""
    out: dict[str, Any] = {"storage": cfg.storage_url()}
    for stage in cfg.stage_list():
        try:
            study = open_study(cfg, stage)
        except HistosynthError:
            out[stage] = {"started": False}
            continue
        b = best_trial(cfg, stage)
        out[stage] = {"target": total_trials(cfg), **counts(study), "best": _summary(cfg, stage, b) if b else None}
    return out


def _summary(cfg: SearchConfig, stage: str, t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return {"trial": t.number, "genotype": t.user_attrs[GENOTYPE], "fid": t.value, "checkpoint": str(checkpoint_path(cfg, stage, t.number))}


def best(cfg: SearchConfig) -> dict[str, Any]:
    """The best candidate of every stage that has one."""
    found = {}
    for stage in cfg.stage_list():
        try:
            t = best_trial(cfg, stage)
        except HistosynthError:
            t = None
        if t is not None:
            found[stage] = _summary(cfg, stage, t)
    if not found:
        raise HistosynthError(f"no finished candidates in {cfg.storage_url()}", "run `histosynth search run` first")
    return found


def retrain(cfg: SearchConfig, steps: int | None = None) -> dict[str, Any]:
    """Train the winning pair from scratch for ``retrain_steps`` (:func:`train_bundle`) into ``<root>/winner``.

    The generator is the stage-g winner, the discriminator the stage-d winner (the fixed one without stage d)."""
    found = best(cfg)
    if "g" not in found:
        raise HistosynthError("no generator search results to retrain", "run stage g (stages=g or g,d)")
    g = Genotype.parse(found["g"]["genotype"], "g")
    d = Genotype.parse(found["d"]["genotype"], "d") if "d" in found else Genotype.parse(cfg.fixed_d, "d")
    return train_bundle(cfg, g, d, cfg.root() / "winner", steps or cfg.retrain_steps, f"{cfg.name}-winner")


def train_bundle(cfg: SearchConfig, g: Genotype, d: Genotype, folder: Path, steps: int, run_name: str, score: bool = True) -> dict[str, Any]:
    """Train the pair ``(g, d)`` from scratch (seed ``cfg.seed``) inside an MLflow run and save its generator as a
    bundle (``<folder>/generator.pt``, logged as the run's ``generator/`` artifact): it loads, exports, registers and
    serves like a trained generator. ``score``: also its search fitness (FID on ``fid_split``); a caller that
    scores the bundle with the evaluation suite skips it."""
    data = fitness.load_data(cfg)
    classes = list(data.source.classes)
    gen, disc = fitness.build_pair(cfg, g, d, len(classes))
    uri = tracking.configure(cfg.tracking_uri)
    import mlflow

    with mlflow.start_run(experiment_id=tracking.ensure_experiment(cfg.experiment), run_name=run_name) as run:
        mlflow.set_tags({"histosynth.kind": "ga-gan-winner", "search.name": cfg.name})
        tracking.log_params({"g_genotype": str(g), "d_genotype": str(d), "steps": steps})
        if score:
            result = fitness.evaluate(gen, disc, data, cfg, steps, cfg.seed)
        else:
            t0 = time.perf_counter()
            result = {**fitness.train_pair(gen, disc, data, cfg, steps, cfg.seed), "cost_s": time.perf_counter() - t0}
        spec = gen.spec()
        extra = {"run_id": run.info.run_id, "tracking_uri": uri, "method": "ga-gan", "search": cfg.name, "d_genotype": str(d), "steps": steps, "result": result, "histosynth": histosynth.__version__}
        path = save_generator(folder, gen.eval(), spec, classes, extra)
        log_bundle(path, spec, classes)
        mlflow.log_metrics(fitness.finite(result))
    return {"g_genotype": str(g), "d_genotype": str(d), "path": str(path), "run_id": run.info.run_id, **result}
