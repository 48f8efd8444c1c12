"""A search worker: evaluates trials of one stage's Optuna study until the stage has its candidates.

Any number of workers (processes here, pods on the cluster) share one study through its RDB storage. Each trial
sends a heartbeat; a worker that dies (kill -9, a lost node) stops beating, and the next worker to look fails its
trial after the grace period and re-queues it with the same genotype (Optuna's failed-trial retry). Finished
trials live in the storage and their checkpoints on disk, so nothing finished is lost.

Run one by hand (or as a pod): ``python -m histosynth.search.worker CONFIG.yaml STAGE``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from histosynth import tracking
from histosynth.errors import HistosynthError
from histosynth.files.torchfile import load_payload, save_atomic
from histosynth.gan.nets.ga_gan import inherit, stages_for
from histosynth.gan.nets.ga_gan_genotype import Genotype
from histosynth.search import fitness
from histosynth.search.aging_evolution import GENOTYPE, PARENT, AgingEvolutionSampler, Evolution
from histosynth.search.config import SearchConfig, load_search_config

log = logging.getLogger("histosynth.search")
CHECKPOINT = "histosynth.ga-gan-candidate/1"
# study user attributes: the stage's fixed partner network (stage g: the method's D; stage d: the best G)
PARTNER, PARTNER_CKPT = "partner_genotype", "partner_checkpoint"


def study_name(cfg: SearchConfig, stage: str) -> str:
    return f"{cfg.name}-{stage}"


def total_trials(cfg: SearchConfig) -> int:
    return cfg.population + cfg.cycles


def storage(cfg: SearchConfig) -> optuna.storages.RDBStorage:
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats and retries are "experimental" since 2.8
    url = cfg.storage_url()
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs=engine,
        heartbeat_interval=cfg.heartbeat_s,
        grace_period=cfg.grace_s,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=cfg.max_retry),
    )


def open_study(cfg: SearchConfig, stage: str, create: bool = False) -> optuna.Study:
    evolution = Evolution(stage, stages_for(cfg.image_size), cfg.population, cfg.sample, cfg.mutation_prob, cfg.seed)
    sampler = AgingEvolutionSampler(evolution)
    name = study_name(cfg, stage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if create:
        return optuna.create_study(study_name=name, storage=storage(cfg), sampler=sampler, direction="minimize", load_if_exists=True)
    try:
        return optuna.load_study(study_name=name, storage=storage(cfg), sampler=sampler)
    except KeyError:
        raise HistosynthError(f"no search study '{name}' in {cfg.storage_url()}", "start the search with `histosynth search run` (it creates the studies)") from None


def counts(study: optuna.Study) -> dict[str, int]:
    found = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        found[t.state.name.lower()] += 1
    return found


def checkpoint_path(cfg: SearchConfig, stage: str, number: int) -> Path:
    return cfg.root() / "trials" / f"{stage}-{number:05d}.pt"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    return load_payload(Path(path), "GA-GAN candidate", CHECKPOINT, "re-run the search stage that wrote it")


class Objective:
    """Builds the trial's pair (the searched network from its genotype, the partner from the study), inherits
    weights where shapes match (parent candidate, else the partner's checkpoint), trains, scores, saves, logs."""

    def __init__(self, cfg: SearchConfig, stage: str, data: fitness.Data, experiment_id: str):
        self.cfg, self.stage, self.data, self.experiment_id = cfg, stage, data, experiment_id

    def __call__(self, trial: optuna.Trial) -> float:
        cfg, stage = self.cfg, self.stage
        trial.set_user_attr("pid", os.getpid())
        if self._surplus(trial):
            raise optuna.TrialPruned(f"the stage's {total_trials(cfg)} trials were already taken when trial {trial.number} was created")
        attrs = trial.study.user_attrs
        mine = trial.study._storage.get_trial(trial._trial_id).user_attrs  # as the sampler wrote them
        searched = Genotype.parse(mine[GENOTYPE], stage)
        partner = Genotype.parse(attrs[PARTNER])
        g, d = (searched, partner) if stage == "g" else (partner, searched)
        gen, disc = fitness.build_pair(cfg, g, d, len(self.data.source.classes))
        parent = mine.get(PARENT)
        seed_from = checkpoint_path(cfg, stage, parent) if parent is not None else attrs.get(PARTNER_CKPT)
        inherited = 0
        if seed_from and Path(seed_from).is_file():
            state = load_checkpoint(seed_from)
            inherited = len(inherit(gen, state["g"])) + len(inherit(disc, state["d"]))
        trial.set_user_attr("started", time.time())
        result = fitness.evaluate(gen, disc, self.data, cfg, cfg.steps, cfg.seed + trial.number)
        trial.set_user_attr("ended", time.time())
        path = checkpoint_path(cfg, stage, trial.number)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_atomic(path, {"format": CHECKPOINT, "g_genotype": str(g), "d_genotype": str(d), "g": fitness.cpu_state(gen), "d": fitness.cpu_state(disc), "result": result})
        self._log(trial, searched, g, d, parent, inherited, result)
        log.info("trial %s-%d %s fid=%.3f (%.1f s, pid %d)", stage, trial.number, searched, result["fid"], result["cost_s"], os.getpid())
        return result["fid"]

    def _surplus(self, trial: optuna.Trial) -> bool:
        """Two workers can both see one free slot and both create a trial (count, then create: not atomic). The
        trial numbers order them: a trial whose live (not failed, not pruned) predecessors already fill the
        budget is surplus, and is pruned before it costs anything, so a stage never runs more than its budget."""
        dead = (TrialState.FAIL, TrialState.PRUNED)
        before = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number and t.state not in dead]
        return len(before) >= total_trials(self.cfg)

    def _log(self, trial, searched: Genotype, g: Genotype, d: Genotype, parent, inherited: int, result: dict[str, float]) -> None:
        import mlflow

        with mlflow.start_run(experiment_id=self.experiment_id, run_name=f"{study_name(self.cfg, self.stage)}-{trial.number}"):
            mlflow.set_tags({"histosynth.kind": "ga-gan-candidate", "search.study": study_name(self.cfg, self.stage), "search.stage": self.stage})
            tracking.log_params({"genotype": str(searched), "g_genotype": str(g), "d_genotype": str(d), "trial": trial.number, "parent": parent, "inherited_tensors": inherited, "pid": os.getpid(), "steps": self.cfg.steps})
            mlflow.log_metrics(fitness.finite(result))


def run_worker(cfg: SearchConfig, stage: str) -> int:
    """Evaluate trials until the stage has ``population + cycles`` finished ones; returns how many this worker ran.

    While the rest are running elsewhere it waits (a dead worker's trial comes back as a waiting retry)."""
    study = open_study(cfg, stage)
    data = fitness.load_data(cfg)
    tracking.configure(cfg.tracking_uri)
    objective = Objective(cfg, stage, data, tracking.ensure_experiment(cfg.experiment))
    total, ran = total_trials(cfg), 0
    while True:
        optuna.storages.fail_stale_trials(study)
        n = counts(study)
        if n["complete"] >= total:
            return ran
        if n["complete"] + n["running"] >= total and not n["waiting"]:
            time.sleep(min(cfg.heartbeat_s, 5))
            continue
        study.optimize(objective, n_trials=1, catch=(RuntimeError,))
        ran += 1


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.exit("usage: python -m histosynth.search.worker CONFIG.yaml STAGE")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run_worker(load_search_config(args[0]), args[1])
    except HistosynthError as e:
        sys.exit(f"error: {e.problem}" + (f"\nfix: {e.hint}" if e.hint else ""))


if __name__ == "__main__":
    main()
