"""The train stage's torchrun path (``nproc`` processes on this machine): a real ``torchrun --standalone -m
histosynth train`` subprocess trains ONE model: one MLflow run, rank 0's result and bundle read back."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from histosynth.errors import ConfigError, HistosynthError
from histosynth.stages import torchrun_train, train_stage
from histosynth.tracking import ensure_experiment

# 1: the in-process trainer under torchrun; 2: data-parallel (gloo on CPU), still one model and one run
NPROCS = [1, 2]


@pytest.mark.integration
@pytest.mark.parametrize("nproc", NPROCS)
def test_torchrun_trains_one_model(nproc, make_cfg, tracking_uri, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = make_cfg("train.max_steps=4", f"tracking.experiment=torchrun-stage-{nproc}")
    result = torchrun_train(cfg.to_yaml(), nproc)
    assert result["steps"] == 4 and "loss_d" in result["metrics"]
    assert Path(result["bundle"]).is_file() and Path(result["bundle"]).stat().st_size > 0
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(f"torchrun-stage-{nproc}").experiment_id])
    assert [r.info.run_id for r in runs] == [result["run_id"]]  # one run, whatever the number of processes


@pytest.mark.integration
def test_a_deleted_experiment_is_a_clear_error(tracking_uri):
    """MLflow keeps a deleted experiment's name and refuses runs in it; say so before training, with the fix."""
    client = mlflow.MlflowClient(tracking_uri)
    exp_id = client.create_experiment("deleted-one")
    client.delete_experiment(exp_id)
    mlflow.set_tracking_uri(tracking_uri)
    with pytest.raises(HistosynthError, match="'deleted-one'.*is deleted") as e:
        ensure_experiment("deleted-one")
    assert f"mlflow experiments restore --experiment-id {exp_id}" in e.value.hint


@pytest.mark.unit
def test_nproc_below_one_is_a_clear_error(store_root, tmp_path):
    with pytest.raises(ConfigError, match="nproc=0"):
        train_stage(store_root, "train:\n  device: cpu\n", [], "", tmp_path / "bundle", nproc=0)
