"""The training pipeline: compiled IR for Kubeflow, and a real kfp.local run on the smoke preset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def histosynth(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "histosynth"
    return subprocess.run([str(exe), *args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ir") / "train.yaml"
    proc = histosynth("pipeline", "compile", "train", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    # two documents: the pipeline spec, then the Kubernetes platform spec (node selector, tolerations)
    spec, platform = yaml.safe_load_all(out.read_text())
    return {**spec, **platform}


@pytest.mark.unit
def test_compiled_pipeline_has_every_stage_in_order(compiled):
    tasks = compiled["root"]["dag"]["tasks"]
    assert set(tasks) == {"prepare-data", "train-gan", "evaluate-gan", "register-gan", "export-onnx"}
    assert tasks["train-gan"]["dependentTasks"] == ["prepare-data"]
    assert set(tasks["register-gan"]["dependentTasks"]) == {"evaluate-gan", "train-gan"}
    assert tasks["export-onnx"]["dependentTasks"] == ["register-gan"]
    # typed artifacts flow between steps
    inputs = tasks["evaluate-gan"]["inputs"]["artifacts"]
    assert inputs["generator"]["taskOutputArtifact"] == {"outputArtifactKey": "generator", "producerTask": "train-gan"}
    assert compiled["components"]["comp-train-gan"]["outputDefinitions"]["artifacts"]["generator"]["artifactType"]["schemaTitle"] == "system.Model"


@pytest.mark.unit
def test_training_step_requests_a_gpu_node(compiled):
    executors = compiled["deploymentSpec"]["executors"]
    train = executors["exec-train-gan"]["container"]
    assert train["resources"]["accelerator"]["resourceCount"] == "1"
    assert train["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert "cuda" in train["image"]
    assert "cpu" in executors["exec-register-gan"]["container"]["image"]
    k8s = compiled["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-gan"]
    assert k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert k8s["tolerations"][0]["key"] == "nvidia.com/gpu" and k8s["tolerations"][0]["effect"] == "NoSchedule"


@pytest.mark.unit
def test_default_preset_is_compiled_in_and_editable(compiled):
    params = compiled["root"]["inputDefinitions"]["parameters"]
    preset = yaml.safe_load(params["config_yaml"]["defaultValue"])
    assert preset["method"] == "dcgan"
    assert params["overrides"]["parameterType"] == "LIST"


@pytest.mark.unit
def test_evaluation_options_are_one_eval_config_parameter(compiled):
    param = compiled["root"]["inputDefinitions"]["parameters"]["eval_config"]
    assert param["parameterType"] == "STRUCT"
    default = param["defaultValue"]  # the evaluate stage's defaults, with the cheap local TSTR
    assert default["extractor"] == "inception-fid" and default["metrics"] == "fid,kid,precision_recall,density_coverage"
    assert (default["tstr"], default["tsne"], default["knn"], default["report"]) == ("auto", True, 5, True)
    assert default["tstr_options"]["backbone"] == "resnet18"
    assert compiled["root"]["dag"]["tasks"]["evaluate-gan"]["inputs"]["parameters"]["eval_config"] == {"componentInputParameter": "eval_config"}


@pytest.mark.unit
def test_eval_flags_are_folded_into_eval_config():
    proc = histosynth("pipeline", "run", "train", "--eval-n-fake", "64", "--no-eval-diagnostics", "--eval-tstr-options", '{"epochs": 1}', "--dry-run")
    assert proc.returncode == 0, proc.stderr
    arguments = json.loads(proc.stdout)
    assert not {k for k in arguments if k.startswith("eval_")} - {"eval_config"}
    cfg = arguments["eval_config"]
    assert (cfg["n_fake"], cfg["tsne"], cfg["knn"], cfg["tstr"], cfg["tstr_options"], cfg["report"]) == (64, False, 0, "auto", {"epochs": 1}, True)


@pytest.mark.unit
def test_unknown_pipeline_names_the_available_ones():
    proc = histosynth("pipeline", "compile", "nope")
    assert proc.returncode == 2
    assert "no pipeline 'nope'" in proc.stderr and "train" in proc.stderr


TSTR_TINY = json.dumps({"backbone": "resnet18", "init": "random", "trainable_layers": -1, "head_hidden": 0, "epochs": 1, "folds": 2, "lr": 1e-3, "batch_size": 32, "input_size": 32, "max_real": 96})


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1800)  # a whole KFP local run; its subprocess has 1500 s
def test_local_run_trains_evaluates_registers_and_exports(tmp_path):
    """kfp.local with the embedded sample data built inside the run, the smoke preset made class-conditional (so the
    evaluate step runs everything: metrics, TSTR, t-SNE, kNN grid, report), a local MLflow store."""
    home = Path(os.environ["HISTOSYNTH_HOME"])
    proc = histosynth(
        "pipeline", "run", "train",
        "--config", "configs/dcgan-quick.yaml",
        "--set", "data.conditional=true",
        "--data-repo", "",
        "--model-name", "tiny-dcgan",
        "--eval-n-fake", "64",
        "--eval-metrics", "fid,kid",
        "--eval-tstr", "on",
        "--eval-tstr-options", TSTR_TINY,
        "--pipeline-root", str(tmp_path / "runs"),
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "pipeline 'train' finished" in proc.stdout
    assert "Got executor_input" not in proc.stdout + proc.stderr and "will be ignored" not in proc.stdout + proc.stderr  # quiet by default

    runs = tmp_path / "runs"
    bundle = next(runs.rglob("generator.pt"))
    onnx = next(runs.rglob("model.onnx"))
    assert bundle.stat().st_size > 10_000 and onnx.stat().st_size > 10_000
    results = next(p for p in runs.rglob("results") if p.is_file())
    record = json.loads(results.read_text().splitlines()[-1])
    assert record["metrics"]["fid"] > 0
    assert set(record["tstr"]["settings"]) == {"real", "synthetic", "real+synthetic"} and record["tstr"]["folds"] == 2
    for setting in record["tstr"]["settings"].values():
        assert 0.0 <= setting["accuracy"]["mean"] <= 1.0
    diagnostics = next(p for p in runs.rglob("diagnostics") if p.is_dir())
    assert {"tsne.png", "knn.png"} <= {p.name for p in diagnostics.rglob("*.png")}
    report = next(p for p in runs.rglob("report") if p.is_file())
    assert "<html" in report.read_text()[:2000].lower()

    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # explicit: earlier in-process tests set a global registry URI
    mv = client.get_model_version_by_alias("tiny-dcgan", "candidate")
    assert str(mv.version) == "1"
    assert float(mv.tags["onnx_parity_max_abs_diff"]) < 1e-3
    run = client.get_run(mv.run_id)
    assert run.data.params["data.image_size"] == "32" and run.data.params["data.conditional"] == "True"
    assert any(k.endswith("fid") for k in run.data.metrics)
    assert any(k.startswith("tstr/synthetic/accuracy") for k in run.data.metrics)
    assert "data.manifest_hash" in run.data.params


@pytest.mark.unit
def test_bad_tstr_options_are_refused_before_any_step():
    proc = histosynth("pipeline", "run", "train", "--eval-tstr-options", "[1, 2]", "--dry-run")
    assert proc.returncode == 2 and "not a JSON object" in proc.stderr
