"""`torchrun --nproc_per_node 2 -m histosynth snn train` on CPU (gloo): the MFT-SNN step has no randomness of its
own and its losses are batch means, so two processes on halves of each global batch with averaged gradients train
the one-process network (up to float summation order), in one MLflow run with the same metrics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from histosynth import tracking
from histosynth.config.snn import load_snn_config
from histosynth.snn.mft_snn import read_bundle

BIN = Path(sys.executable).parent
EXPERIMENT = load_snn_config(None, []).tracking.experiment

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~40 s on 2 loaded cores


def test_two_processes_train_the_one_process_snn(pairs_dir, snn_tracking_uri, tiny_overrides, tmp_path):
    from mlflow import MlflowClient

    tracking.configure(snn_tracking_uri)
    tracking.ensure_experiment(EXPERIMENT)  # the two runs start at once: create the store before they race for it
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def args(out: Path) -> list[str]:
        sets = tiny_overrides(pairs_dir, snn_tracking_uri, out, "stage1.max_steps=3", "train.log_every=1")
        return ["snn", "train", "--stage", "1", "--no-progress", *(a for s in sets for a in ("-s", s))]

    one = subprocess.Popen([str(BIN / "histosynth"), *args(tmp_path / "one")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    two = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "histosynth", *args(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    out_one, err_one = one.communicate(timeout=300)
    assert one.returncode == 0, err_one[-3000:]
    assert two.stdout.count("stage 1 done") == 1 and "stage 1 done" in out_one  # rank 0 alone reports

    a, b = read_bundle(tmp_path / "one"), read_bundle(tmp_path / "two")
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k, v in a["state_dict"].items():
        # Adam turns a float-rounding difference in a near-zero gradient into a step of ~lr: a few elements in a
        # million move by up to ~1e-4 (measured: 3e-6 of them, 5e-5 at most); on average the nets agree to ~1e-9
        d = (v.float() - b["state_dict"][k].float()).abs()
        assert float(d.mean()) < 1e-7 and float((d > 1e-5).float().mean()) < 1e-4 and float(d.max()) < 5e-4, k

    client = MlflowClient(snn_tracking_uri)
    runs = {d: client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id], f"params.`train.out_dir` = '{tmp_path / d}'") for d in ("one", "two")}
    (r1,), (r2,) = runs["one"], runs["two"]  # one MLflow run per job
    assert r1.data.metrics.keys() == r2.data.metrics.keys() and r2.data.params["snn.processes"] == "2"
    for key in ("loss", "loss_contrastive", "loss_recon"):
        h1, h2 = (client.get_metric_history(r.info.run_id, key) for r in (r1, r2))
        assert [m.step for m in h1] == [m.step for m in h2] == [1, 2, 3]
        assert [m.value for m in h2] == pytest.approx([m.value for m in h1], rel=1e-4)
