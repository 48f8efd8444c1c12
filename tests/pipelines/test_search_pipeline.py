"""The GA-GAN search pipeline: per stage a study, then a fan-out of GPU workers over the worker ids, then the retrained
winner; compiled for Kubeflow and run for real with kfp.local on tiny settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "population=2", "sample=1", "cycles=1", "steps=2", "retrain_steps=2", "batch_size=8", "latent_dim=16", "g_width=16",
    "d_width=4", "n_fake=16", "fid_batch=16", "extractor=cheap_extractor:extractor",
]  # fmt: skip


def histosynth(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "histosynth"
    return subprocess.run([str(exe), *args], cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ir") / "search.yaml"
    proc = histosynth("pipeline", "compile", "search", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    spec, platform = yaml.safe_load_all(out.read_text())
    return {**spec, **platform}


@pytest.mark.unit
def test_each_stage_fans_out_over_the_worker_ids_of_its_study(compiled):
    tasks = compiled["root"]["dag"]["tasks"]
    assert set(tasks) == {"prepare-data", "search-prepare", "for-loop-1", "search-prepare-2", "for-loop-2", "search-retrain"}
    for prepare, loop, stage in (("search-prepare", "for-loop-1", "g"), ("search-prepare-2", "for-loop-2", "d")):
        assert tasks[prepare]["inputs"]["parameters"]["stage"]["runtimeValue"]["constant"] == stage
        iterator = tasks[loop]["parameterIterator"]
        assert iterator["items"] == {"inputParameter": "pipelinechannel--worker_ids"}
        assert prepare in tasks[loop]["dependentTasks"]
        body = compiled["components"][tasks[loop]["componentRef"]["name"]]["dag"]["tasks"]
        (worker,) = body.values()
        assert worker["inputs"]["parameters"]["worker_id"] == {"componentInputParameter": iterator["itemInput"]}
        assert worker["inputs"]["parameters"]["stage"]["runtimeValue"]["constant"] == stage
        assert worker["inputs"]["parameters"]["storage"] == {"componentInputParameter": "pipelinechannel--storage"}
    # stage d starts from the finished stage g; the winner is retrained once both are done
    assert "for-loop-1" in tasks["search-prepare-2"]["dependentTasks"]
    assert "for-loop-2" in tasks["search-retrain"]["dependentTasks"]
    params = compiled["root"]["inputDefinitions"]["parameters"]
    assert params["worker_ids"]["defaultValue"] == [0, 1]
    assert params["storage"]["defaultValue"] == ""  # SQLite beside the search's outputs unless given a URL
    assert yaml.safe_load(params["config_yaml"]["defaultValue"])["population"] == 100  # the method's preset


@pytest.mark.unit
def test_every_worker_and_the_retrain_request_one_gpu(compiled):
    executors = compiled["deploymentSpec"]["executors"]
    k8s = compiled["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in ("exec-search-worker", "exec-search-worker-2", "exec-search-retrain"):
        accelerator = executors[name]["container"]["resources"]["accelerator"]
        assert accelerator["resourceType"] == "nvidia.com/gpu" and accelerator["resourceCount"] == "1", name
        assert k8s[name]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    for name in ("exec-prepare-data", "exec-search-prepare", "exec-search-prepare-2"):
        assert "accelerator" not in executors[name]["container"].get("resources", {}), name


@pytest.mark.unit
def test_a_bad_search_setting_fails_before_any_step_runs():
    proc = histosynth("pipeline", "run", "search", "-c", "configs/ga-gan-cpu.yaml", "-s", "population=1", "--dry-run")
    assert proc.returncode == 2 and "population=1" in proc.stderr
    proc = histosynth("pipeline", "run", "search", "-c", "configs/ga-gan-cpu.yaml", "-s", "workers=3", "--dry-run")
    assert proc.returncode == 0 and '"overrides": [\n    "workers=3"\n  ]' in proc.stdout


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1800)  # a whole KFP local run; its subprocess has 1500 s
def test_local_run_searches_both_stages_with_two_workers_and_retrains(tmp_path):
    from histosynth.search.config import load_search_config
    from histosynth.search.driver import best
    from histosynth.search.worker import counts, open_study, total_trials

    out_dir = tmp_path / "search"
    overrides = [*TINY, f"out_dir={out_dir}"]
    tests_search = str(ROOT / "tests" / "search")  # the steps import the cheap test extractor from there
    env = {"PYTHONPATH": os.pathsep.join([tests_search, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    proc = histosynth(
        "pipeline", "run", "search", "-c", "configs/ga-gan-cpu.yaml", *[a for o in overrides for a in ("-s", o)],
        "--data-repo", "", "--pipeline-root", str(tmp_path / "runs"), env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "pipeline 'search' finished" in proc.stdout
    # kfp.local may run the ParallelFor's workers one after the other (then the first finds the stage done alone);
    # that workers really overlap on one study is tested in tests/search.
    cfg = load_search_config(ROOT / "configs" / "ga-gan-cpu.yaml", overrides)
    for stage in ("g", "d"):
        study = open_study(cfg, stage)
        assert counts(study)["complete"] == total_trials(cfg) == 3, stage
        assert all(t.user_attrs.get("pid") for t in study.trials), stage  # every trial evaluated by a worker
    assert set(best(cfg)) == {"g", "d"}
    winners = sorted((tmp_path / "runs").rglob("search-retrain*/**/generator.pt"))  # the retrain step's output
    assert len(winners) == 1, sorted((tmp_path / "runs").rglob("generator.pt"))
    from histosynth.gan.bundle import load_generator

    _, bundle = load_generator(winners[0])
    assert bundle["spec"]["arch"] == "ga-gan" and bundle["spec"]["genotype"] == best(cfg)["g"]["genotype"]
