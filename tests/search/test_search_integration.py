"""A tiny GA-GAN search end to end: two real worker processes on one SQLite study, a worker killed with SIGKILL
mid-trial (its trial is failed by the heartbeat and retried with the same genotype), the driver resuming the
search and running stage d, then the winner retrained. 32 px, tiny widths, a cheap 12-d extractor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
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
