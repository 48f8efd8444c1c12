"""The train stage's torchrun path (``nproc`` processes on this machine): a real ``torchrun --standalone -m
histosynth train`` subprocess trains ONE model: one MLflow run, rank 0's result and bundle read back."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from histosynth.errors import ConfigError
from histosynth.stages import torchrun_train, train_stage

# 2 (DDP) is checked once the trainer's DDP branch is merged: add it here.
NPROCS = [1]


@pytest.mark.integration
@pytest.mark.parametrize("nproc", NPROCS)
def test_torchrun_trains_one_model(nproc, make_cfg, tracking_uri, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = make_cfg("train.max_steps=4", "tracking.experiment=torchrun-stage")
    result = torchrun_train(cfg.to_yaml(), nproc)
    assert result["steps"] == 4 and "loss_d" in result["metrics"]
    assert Path(result["bundle"]).is_file() and Path(result["bundle"]).stat().st_size > 0
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("torchrun-stage").experiment_id])
    assert [r.info.run_id for r in runs] == [result["run_id"]]  # one run, whatever the number of processes
    client.delete_experiment(runs[0].info.experiment_id)  # the next parameter starts from an empty experiment


@pytest.mark.unit
def test_nproc_below_one_is_a_clear_error(store_root, tmp_path):
    with pytest.raises(ConfigError, match="nproc=0"):
        train_stage(store_root, "train:\n  device: cpu\n", [], "", tmp_path / "bundle", nproc=0)
