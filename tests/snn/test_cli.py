"""`histosynth snn ...`: presets, --dry-run, errors with fixes, and a tiny stage 1 -> stage 2 run through the CLI
into a local SQLite MLflow store (registered, with the init recorded)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from histosynth.cli import _register, app
from histosynth.errors import HistosynthError
from histosynth.config.snn import load_snn_config

REPO = Path(__file__).resolve().parents[2]
_register()
runner = CliRunner()


def _sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("-s", item)]


@pytest.mark.unit
def test_presets_and_dry_run():
    paper = load_snn_config(REPO / "configs" / "mft-snn-paper.yaml")
    assert (paper.model.init, paper.stage1.image_size, paper.stage1.trainable, paper.stage1.epochs) == ("imagenet", 224, 8, 10)
    assert (paper.stage2.image_size, paper.stage2.trainable, paper.stage2.epochs, paper.train.batch_size) == (64, 3, 8, 32)
    assert (paper.optim.lr_recon, paper.optim.lr_sim) == (1e-3, 5e-4)
    samples = load_snn_config(REPO / "configs" / "mft-snn-samples.yaml")
    assert samples.model.init == "hed" and samples.stage1.max_steps > 0
    res = runner.invoke(app, ["snn", "train", "--config", str(REPO / "configs" / "mft-snn-samples.yaml"), "--init", "random", "--stage", "2", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "init: random" in res.output and "stage: '2'" in res.output
    res = runner.invoke(app, ["snn", "train", "-s", "model.init=imagenette", "--dry-run"])
    assert isinstance(res.exception, HistosynthError) and "imagenet, hed, random" in res.exception.hint


@pytest.mark.integration
def test_missing_weights_and_corrupt_bundle_errors(pairs_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HISTOSYNTH_OFFLINE", "1")
    monkeypatch.delenv("HISTOSYNTH_VGG16", raising=False)
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    res = runner.invoke(app, ["snn", "train", *_sets([f"train.pairs={pairs_dir}"]), "--init", "imagenet", "--no-progress"])
    assert isinstance(res.exception, HistosynthError)
    assert "ImageNet VGG-16 weights" in res.exception.problem and "--init hed" in res.exception.hint and "(3)" in res.exception.hint
    res = runner.invoke(app, ["snn", "train", *_sets([f"train.pairs={pairs_dir}", "train.stage=2"]), "--init", "random", "--no-progress"])
    assert isinstance(res.exception, HistosynthError) and "--init-from" in res.exception.hint
    # corrupt bundle through the real entry point: exit 2, "error:" and "fix:" without a traceback
    bad = tmp_path / "snn.pt"
    bad.write_bytes(b"not a torch file")
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    proc = subprocess.run([str(Path(sys.executable).parent / "histosynth"), "snn", "score", "-b", str(bad), "--a", str(img), "--b", str(img)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "not a readable SNN bundle" in proc.stderr and "fix:" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_cli_pairs_stage1_stage2_search_gradcam(splits_root, tmp_path, tiny_overrides, pairs_set):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = runner.invoke(app, ["snn", "pairs", "--root", str(splits_root), "--out", str(tmp_path / "pairs"), *_sets(pairs_set)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "144 patch pairs" in res.output  # 48 train patches x 3 levels
    base = _sets(tiny_overrides(tmp_path / "pairs", uri, tmp_path / "s1"))
    r1 = runner.invoke(app, ["snn", "train", *base, "--stage", "1", "--no-progress"])
    assert r1.exit_code == 0, r1.output + repr(r1.exception)
    assert "init          random VGG-16" in r1.output and "next          histosynth snn train --stage 2" in r1.output
    b1 = tmp_path / "s1" / "snn.pt"
    base2 = _sets(tiny_overrides(tmp_path / "pairs", uri, tmp_path / "s2"))
    r2 = runner.invoke(app, ["snn", "train", *base2, "--stage", "2", "--init-from", str(b1), "--register", "snn-test", "--no-progress"])
    assert r2.exit_code == 0, r2.output + repr(r2.exception)
    assert "registered    snn-test version 1" in r2.output

    from histosynth.snn.mft_snn import read_bundle

    extra = read_bundle(tmp_path / "s2" / "snn.pt")["extra"]
    assert [s["stage"] for s in extra["stages"]] == ["1", "2"] and extra["init"]["init"] == "random"
    assert [s["trainable"] for s in extra["stages"]] == [8, 3]

    client = mlflow.MlflowClient(uri)
    runs = {r.data.tags["snn.stage"]: r for r in client.search_runs([client.get_experiment_by_name("histosynth-snn").experiment_id])}
    assert set(runs) == {"1", "2"}
    for stage, run in runs.items():
        assert run.data.tags["snn.init"] == "random" and run.data.params["init.init"] == "random"
        assert run.data.params["snn.stage.trainable"] == ("8" if stage == "1" else "3")
        assert {a.path for a in client.list_artifacts(run.info.run_id, "snn")} >= {"snn/snn.pt", "snn/spec.json"}
        assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")} >= {"plots/loss_curve.png", "plots/val_similarity.png"}
        assert "loss" in run.data.metrics and "val/auc" in run.data.metrics
    mv = client.get_model_version("snn-test", "1")
    assert mv.run_id == runs["2"].info.run_id and mv.tags["init"] == "random" and mv.tags["stages"] == '["1", "2"]'

    # search: a patch of the store is its own top-1
    from histosynth.data.store import PatchStore

    img = tmp_path / "q.png"
    Image.fromarray(np.asarray(PatchStore(splits_root / "train").images[5])).save(img)
    rs = runner.invoke(app, ["snn", "search", "-b", str(tmp_path / "s2"), "-i", str(img), "-k", "2", "--root", str(splits_root), "--json", "--device", "cpu"])
    assert rs.exit_code == 0, rs.output + repr(rs.exception)
    import json

    top = json.loads(rs.output.strip().splitlines()[-1])["results"][0]["matches"][0]
    assert top["index"] == 5 and top["similarity"] == pytest.approx(1.0, abs=1e-5)
    sc = runner.invoke(app, ["snn", "score", "-b", str(tmp_path / "s2" / "snn.pt"), "--a", str(img), "--b", str(img), "--json", "--device", "cpu"])
    assert sc.exit_code == 0 and json.loads(sc.output)["pairs"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    # gradcam: overlays written and logged to MLflow
    gc = runner.invoke(app, ["snn", "gradcam", "-b", str(tmp_path / "s2"), "--root", str(splits_root), "--n", "2", "--out", str(tmp_path / "gc"), "--tracking-uri", uri, "--device", "cpu"])
    assert gc.exit_code == 0, gc.output + repr(gc.exception)
    assert sorted(p.name for p in (tmp_path / "gc").glob("*.png")) == ["gradcam-00.png", "gradcam-01.png", "gradcam-grid.png"]
    gruns = client.search_runs([client.get_experiment_by_name("histosynth-snn").experiment_id], "tags.`histosynth.kind` = 'snn-gradcam'")
    assert len(gruns) == 1 and len(client.list_artifacts(gruns[0].info.run_id, "gradcam")) == 3


@pytest.mark.integration
@pytest.mark.slow
def test_cli_compare_reports_three_variants(pairs_dir, tmp_path, tiny_overrides):
    import json

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = _sets(tiny_overrides(pairs_dir, uri, "", "stage1.max_steps=1", "stage2.max_steps=1", f"tools.out={tmp_path / 'cmp'}"))
    res = runner.invoke(app, ["snn", "compare", *sets, "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    report = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert list(report["variants"]) == ["stage1", "stage1+2", "single"]
    assert [v["steps"] for v in report["variants"].values()] == [1, 2, 2]  # single-stage: the same total budget
    for v in report["variants"].values():
        assert 0 <= v["test"]["auc"] <= 1 and 0 <= v["test"]["accuracy"] <= 1 and v["test"]["pairs"] == 72
    assert report["init"]["init"] == "random" and "test ROC-AUC" in (tmp_path / "cmp" / "compare.md").read_text()
    client = mlflow.MlflowClient(uri)
    parent = client.get_run(report["parent_run_id"])
    assert "stage1_2/auc" in parent.data.metrics
