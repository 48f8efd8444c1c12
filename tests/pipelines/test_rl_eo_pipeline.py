"""The RL-EO pipeline: data -> pairs -> SNN stage 1 -> stage 2 -> RL-EO GAN -> evaluate -> register -> export,
compiled for Kubeflow and run for real with kfp.local on tiny settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SNN_TINY = [
    "model.init=random", "model.emb_dim=16", "model.hidden=32", "model.decoder_width=4", "stage1.image_size=32",
    "stage2.image_size=32", "stage1.max_steps=2", "stage2.max_steps=2", "train.batch_size=4", "pairs.stage1_per_item=1",
]  # fmt: skip


def histosynth(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "histosynth"
    return subprocess.run([str(exe), *args], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ir") / "rl_eo.yaml"
    proc = histosynth("pipeline", "compile", "rl_eo", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    spec, platform = yaml.safe_load_all(out.read_text())
    return {**spec, **platform}


@pytest.mark.unit
def test_stages_run_in_the_paper_order(compiled):
    tasks = compiled["root"]["dag"]["tasks"]
    assert set(tasks) == {"prepare-data", "build-pairs", "train-snn", "train-snn-2", "train-gan", "evaluate-gan", "register-gan", "export-onnx"}
    assert tasks["build-pairs"]["dependentTasks"] == ["prepare-data"]
    assert set(tasks["train-snn"]["dependentTasks"]) == {"build-pairs", "prepare-data"}
    stage2 = tasks["train-snn-2"]
    assert stage2["inputs"]["parameters"]["stage"]["runtimeValue"]["constant"] == 2
    assert stage2["inputs"]["artifacts"]["init_bundle"]["taskOutputArtifact"] == {"outputArtifactKey": "snn", "producerTask": "train-snn"}
    # the GAN's reward comes from the stage-2 network, not stage 1's
    assert tasks["train-gan"]["inputs"]["artifacts"]["snn"]["taskOutputArtifact"] == {"outputArtifactKey": "snn", "producerTask": "train-snn-2"}
    assert set(tasks["register-gan"]["dependentTasks"]) == {"evaluate-gan", "train-gan"}
    preset = yaml.safe_load(compiled["root"]["inputDefinitions"]["parameters"]["config_yaml"]["defaultValue"])
    assert preset["method"] == "rl-eo" and preset["rl_eo"]["weight"] == 0.3


@pytest.mark.unit
def test_rl_eo_mode_is_a_pipeline_parameter_that_reaches_the_gan(compiled):
    params = compiled["root"]["inputDefinitions"]["parameters"]
    assert params["rl_eo_mode"]["defaultValue"] == "paper"  # the paper as written unless asked otherwise
    gan_inputs = compiled["root"]["dag"]["tasks"]["train-gan"]["inputs"]["parameters"]
    assert gan_inputs["rl_eo_mode"] == {"componentInputParameter": "rl_eo_mode"}


@pytest.mark.unit
def test_a_bad_rl_eo_mode_fails_before_any_step_runs():
    proc = histosynth("pipeline", "run", "rl_eo", "--rl-eo-mode", "reinforce", "--dry-run")
    assert proc.returncode == 2 and "rl_eo.mode='reinforce' is not an RL-EO mode" in proc.stderr
    proc = histosynth("pipeline", "run", "rl_eo", "--rl-eo-mode", "soft-label", "--dry-run")
    assert proc.returncode == 0 and '"rl_eo_mode": "soft-label"' in proc.stdout
    proc = histosynth("pipeline", "run", "train", "--rl-eo-mode", "weighted", "--dry-run")
    assert proc.returncode == 2 and "trains no MFT-SNN" in proc.stderr


@pytest.mark.unit
def test_snn_stages_and_gan_request_gpus(compiled):
    executors = compiled["deploymentSpec"]["executors"]
    k8s = compiled["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in ("exec-train-snn", "exec-train-snn-2", "exec-train-gan"):
        assert executors[name]["container"]["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu", name
        assert k8s[name]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert "accelerator" not in executors["exec-build-pairs"]["container"].get("resources", {})


@pytest.mark.unit
def test_snn_options_are_refused_for_the_plain_pipeline():
    proc = histosynth("pipeline", "run", "train", "--snn-set", "stage1.max_steps=1", "--dry-run")
    assert proc.returncode == 2 and "trains no MFT-SNN" in proc.stderr


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1800)  # a whole KFP local run; its subprocess has 1500 s
def test_local_run_trains_snn_then_acting_rl_eo_gan(tmp_path):
    home = Path(os.environ["HISTOSYNTH_HOME"])
    snn_args = [a for s in SNN_TINY for a in ("--snn-set", s)]
    proc = histosynth(
        "pipeline", "run", "rl_eo",
        "--config", "configs/dcgan-quick.yaml",
        *snn_args,
        "--rl-eo-mode", "weighted",
        "--data-repo", "",
        "--model-name", "tiny-rl-eo",
        "--eval-n-fake", "64",
        "--eval-metrics", "fid,kid",
        "--no-eval-diagnostics",
        "--pipeline-root", str(tmp_path / "runs"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "pipeline 'rl_eo' finished" in proc.stdout
    assert len(list((tmp_path / "runs").rglob("snn.pt"))) == 2  # stage 1 and stage 2
    assert next((tmp_path / "runs").rglob("model.onnx")).stat().st_size > 10_000

    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.get_model_version_by_alias("tiny-rl-eo", "candidate")
    run = client.get_run(mv.run_id)
    assert run.data.params["rl_eo.enabled"] == "True" and run.data.params["rl_eo.weight"] == "0.3"
    assert 0.0 <= run.data.metrics["rl_eo/reward"] <= 0.3  # w * mean similarity in [0, 1]
    assert run.data.params["rl_eo.mode"] == "weighted" and run.data.tags["rl_eo.mode"] == "weighted"
    assert run.data.tags["rl_eo.reward_gradient"].startswith("D only")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/reward_curve.png" in artifacts
    # the similarity network the reward came from is registered too, with the init it was trained from
    (snn,) = client.search_model_versions("name='histosynth-mft-snn'")
    assert snn.tags["init"] == "random"
    assert float(mv.tags["onnx_parity_max_abs_diff"]) < 1e-3
