"""`histosynth train` from the shipped presets, and a run against a real MLflow tracking server."""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow
import pytest
import torch
from typer.testing import CliRunner

from histosynth.gan.bundle import load_generator
from histosynth.cli import _register, app, main
from histosynth.config import load_config
from histosynth.data.store import PatchStore
from histosynth.gan.train import train

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
SMALL = ["-s", "model.g_features=8", "-s", "model.d_features=8", "-s", "train.batch_size=8", "-s", "train.device=cpu"]

_register()


@pytest.mark.unit
@pytest.mark.parametrize("preset", ["dcgan-quick.yaml", "dcgan-samples.yaml", "dcgan-paper.yaml"])
def test_presets_load(preset):
    cfg = load_config(CONFIGS / preset)
    assert cfg.method == "dcgan" and cfg.model.arch == "dcgan"
    if preset == "dcgan-paper.yaml":
        assert (cfg.data.image_size, cfg.train.batch_size, cfg.train.epochs) == (64, 128, 200)
        assert (cfg.optim.lr_g, cfg.optim.lr_d, cfg.optim.beta1, cfg.optim.grad_clip) == (2e-4, 2e-4, 0.5, 0.1)
        assert (cfg.model.latent_dim, cfg.model.g_features, cfg.model.d_features, cfg.loss.name) == (100, 64, 64, "bce")
    if preset == "dcgan-quick.yaml":
        assert cfg.data.image_size == 32 and 0 < cfg.train.max_steps <= 50


@pytest.mark.integration
def test_cli_quick_preset_then_resume(store_root, tracking_uri, tmp_path):
    runner = CliRunner()
    common = ["-s", f"data.root={store_root}", "-s", f"tracking.tracking_uri={tracking_uri}", *SMALL]
    res = runner.invoke(app, ["train", "--config", str(CONFIGS / "dcgan-quick.yaml"), *common, "-s", "train.max_steps=3", "-s", f"train.out_dir={tmp_path / 'a'}", "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    for label in ("run id", "MLflow", "samples", "checkpoint", "generator"):
        assert label in res.output
    assert tracking_uri in res.output
    ckpt = tmp_path / "a" / "checkpoints" / "last.pt"
    assert ckpt.is_file() and (tmp_path / "a" / "generator" / "generator.pt").is_file()

    # --resume without --config: the checkpoint's config, with overrides on top
    dry = runner.invoke(app, ["train", "--resume", str(ckpt), "-s", "train.max_steps=5", "--dry-run"])
    assert dry.exit_code == 0 and "max_steps: 5" in dry.output and "g_features: 8" in dry.output
    res2 = runner.invoke(app, ["train", "--resume", str(ckpt), "-s", "train.max_steps=5", "-s", f"train.out_dir={tmp_path / 'b'}", "--no-progress"])
    assert res2.exit_code == 0, res2.output + repr(res2.exception)
    assert "5 steps" in res2.output
    gen, meta = load_generator(tmp_path / "b" / "generator")
    assert meta["extra"]["step"] == 5


@pytest.mark.unit
def test_cli_user_errors_exit_2_without_traceback(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["histosynth", "train", "-s", f"data.root={tmp_path / 'none'}"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "no patch store" in err and "fix:" in err and "Traceback" not in err
    monkeypatch.setattr(sys, "argv", ["histosynth", "train", "--resume", str(tmp_path / "nope.pt")])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2 and "checkpoint" in capsys.readouterr().err


@pytest.mark.integration
def test_training_against_a_real_mlflow_server(mlflow_server, make_cfg, store_root):
    """The same code against `mlflow server`: params, metrics and artifacts (through the server) read back."""
    result = train(make_cfg(f"tracking.tracking_uri={mlflow_server}", "train.max_steps=4", "tracking.experiment=server-test"), progress=False)
    assert result.tracking_uri == mlflow_server and result.run_link.startswith(mlflow_server)
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.name == "server-test" and exp.artifact_location.startswith("mlflow-artifacts:"), exp.artifact_location
    manifest_hash = PatchStore(store_root / "train").manifest_hash
    assert run.data.params["data.manifest_hash"] == manifest_hash and run.data.tags["data.manifest_hash"] == manifest_hash
    assert run.data.params["model.g_features"] == "8"
    assert [m.step for m in client.get_metric_history(result.run_id, "loss_d")] == [2, 4]
    assert {a.path for a in client.list_artifacts(result.run_id, "generator")} >= {"generator/generator.pt", "generator/spec.json"}
    local = client.download_artifacts(result.run_id, "generator/generator.pt", str(Path(result.out_dir) / "downloaded"))
    gen, meta = load_generator(local)
    assert meta["extra"]["run_id"] == result.run_id
    with torch.no_grad():
        assert gen(torch.randn(2, 16)).shape == (2, 3, 32, 32)
