"""evaluate_generator end to end: class proportions, JSON lines, cache reuse, MLflow logging, the CLI, and one
run through the real FID Inception on a few images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from histosynth.errors import HistosynthError
from histosynth.evaluation.suite import class_allocation, evaluate_generator, metric_key

@pytest.mark.unit
def test_class_allocation_follows_real_proportions():
    labels = np.array([0] * 30 + [1] * 10 + [2] * 0)
    ids = class_allocation(labels, ["a", "b", "c"], ["b", "a", "c"], 41, seed=0)
    assert len(ids) == 41
    assert (ids == 1).sum() == 31 and (ids == 0).sum() == 10  # generator order differs: mapped by name
    assert not np.array_equal(ids, np.sort(ids))  # shuffled
    with pytest.raises(HistosynthError, match="does not know"):
        class_allocation(labels, ["a", "b", "c"], ["a"], 10, seed=0)


@pytest.mark.unit
def test_evaluate_conditional_jsonl_and_cache(tiny_setup, pixel_extractor, private_cache, tmp_path):
    """Cache misses and hits are asserted: a private cache (the shared test cache keeps entries across runs)."""
    out = tmp_path / "results.jsonl"
    kw = dict(extractor=pixel_extractor, device="cpu", out_jsonl=out, batch_size=16, metric_options={"kid_subsets": 10})
    r1 = evaluate_generator(tiny_setup["cond"], tiny_setup["splits"], split="test", **kw)
    assert r1["n_real"] == 40 and r1["n_fake"] == 40
    assert r1["fake_class_counts"] == {"a": 30, "b": 10}
    assert set(r1["metrics"]) >= {"fid", "kid_mean", "kid_std", "precision", "recall", "f1", "density", "coverage"}
    assert r1["comparable_with_published"] is False and any("not comparable" in n for n in r1["notes"])
    assert r1["cache"]["hit"] is False
    json.dumps(r1)  # plain JSON types only (a KFP component returns it as is)
    r2 = evaluate_generator(tiny_setup["cond"], tiny_setup["splits"], split="test", **kw)
    assert r2["cache"]["hit"] is True and r2["metrics"] == r1["metrics"]  # same seed: same numbers
    r3 = evaluate_generator(tiny_setup["uncond"], tiny_setup["splits"], split="val", n_fake=20, metrics="fid,kid", seed=1, **kw)
    assert r3["n_real"] == 24 and r3["n_fake"] == 20 and r3["cache"]["hit"] is False and r3["fake_class_counts"] is None
    assert set(r3["metrics"]) == {"fid", "kid_mean", "kid_std"} and r3["details"]["kid_subset_size"] == 20
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 3 and lines[0]["metrics"] == r1["metrics"]
    for rec in lines:
        assert {"timestamp", "model", "extractor", "n_real", "n_fake", "metrics", "comparable_with_published"} <= set(rec)
        assert rec["model"]["sha256"] and rec["extractor"]["name"] == pixel_extractor
    # a real subset is its own cache entry
    r4 = evaluate_generator(tiny_setup["cond"], tiny_setup["splits"], split="test", n_real=20, **kw)
    assert r4["n_real"] == 20 and r4["cache"]["hit"] is False and r4["real"]["subset"] is True


@pytest.mark.unit
def test_inception_score_needs_logits(tiny_setup, pixel_extractor, inception_path, monkeypatch):
    rec = evaluate_generator(tiny_setup["uncond"], tiny_setup["splits"], metrics=["is"], extractor=pixel_extractor, device="cpu")
    assert rec["metrics"]["is_mean"] >= 1.0
    monkeypatch.setenv("HISTOSYNTH_INCEPTION", str(inception_path))
    with pytest.raises(HistosynthError, match="needs classifier logits"):
        evaluate_generator(tiny_setup["uncond"], tiny_setup["splits"], metrics=["fid", "is"], device="cpu")


@pytest.mark.unit
def test_mlflow_logging(tiny_setup, pixel_extractor):
    from histosynth import tracking

    tracking.configure()
    import mlflow

    with mlflow.start_run() as run:
        pass
    rec = evaluate_generator(tiny_setup["cond"], tiny_setup["splits"], metrics="fid,kid", extractor=pixel_extractor, device="cpu", mlflow_run_id=run.info.run_id, metric_options={"kid_subsets": 5})
    logged = mlflow.get_run(run.info.run_id)
    assert logged.data.metrics[metric_key("test", pixel_extractor, "fid")] == pytest.approx(rec["metrics"]["fid"])
    assert "test/test-pixels/kid_mean" in logged.data.metrics  # non-standard extractors never land under test/fid
    assert logged.data.tags[f"eval.test.{pixel_extractor}.comparable_with_published"] == "false"
    arts = [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "evaluations")]
    assert len(arts) == 1 and arts[0].endswith(f"-test-{pixel_extractor}.json")
    with pytest.raises(HistosynthError, match="not found"):
        evaluate_generator(tiny_setup["cond"], tiny_setup["splits"], metrics="fid", extractor=pixel_extractor, device="cpu", mlflow_run_id="0" * 32)


@pytest.mark.unit
def test_errors(tiny_setup, pixel_extractor, tmp_path):
    with pytest.raises(HistosynthError, match="no patch store"):
        evaluate_generator(tiny_setup["cond"], tmp_path / "nowhere", extractor=pixel_extractor)
    with pytest.raises(HistosynthError, match="not found"):
        evaluate_generator(tmp_path / "missing.pt", tiny_setup["splits"], extractor=pixel_extractor)
    with pytest.raises(HistosynthError, match="unknown metric"):
        evaluate_generator(tiny_setup["cond"], tiny_setup["splits"], metrics="fid,psnr", extractor=pixel_extractor)


@pytest.mark.unit
def test_cli(tiny_setup, pixel_extractor, tmp_path):
    from histosynth.cli import _register, app

    _register()
    out = tmp_path / "r.jsonl"
    res = CliRunner().invoke(app, ["evaluate", "--bundle", str(tiny_setup["cond"]), "--real", str(tiny_setup["splits"]), "--metrics", "fid,kid,pr",
                                   "--extractor", pixel_extractor, "--n", "24", "--out", str(out), "--device", "cpu", "--set", "kid_subsets=5"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "fid" in res.output and "kid_mean" in res.output and "precision" in res.output and "NO" in res.output
    # one line per phase on stderr (a non-tty here: no bar), with each phase's duration
    for line in (f"> load {pixel_extractor} (1)", "> real features", "> fake features (24)", "fake features: 24/24 in ", "> metrics fid,kid,precision_recall (1)"):
        assert line in res.stderr
    assert "> real features" not in res.stdout
    rec = json.loads(out.read_text())
    assert rec["n_fake"] == 24 and rec["options"]["kid_subsets"] == 5
    bad = CliRunner().invoke(app, ["evaluate", "--bundle", str(tiny_setup["cond"]), "--real", str(tiny_setup["splits"]), "--extractor", "nope"])
    assert isinstance(bad.exception, HistosynthError) and "unknown feature extractor" in str(bad.exception)


@pytest.mark.numerics
def test_end_to_end_with_the_fid_inception(tiny_setup, inception_path, monkeypatch, tmp_path):
    """The standard extractor on 6 real + 6 generated 32 px images (Inception on CPU is slow: few images)."""
    monkeypatch.setenv("HISTOSYNTH_INCEPTION", str(inception_path))
    rec = evaluate_generator(tiny_setup["uncond"], tiny_setup["splits"], split="test", n_real=6, n_fake=6, device="cpu", batch_size=6, out_jsonl=tmp_path / "r.jsonl")
    assert rec["comparable_with_published"] is True and rec["extractor"]["name"] == "inception-fid"
    assert rec["extractor"]["weights_sha256"] == "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
    assert rec["metrics"]["fid"] > 0 and np.isfinite(list(rec["metrics"].values())).all()
    assert any("biased" in n for n in rec["notes"])  # 6 samples << 2048
