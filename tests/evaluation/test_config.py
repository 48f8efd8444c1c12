"""EvalConfig: one object for every evaluation option, its dict round trip (a KFP parameter) and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from histosynth.errors import ConfigError, HistosynthError
from histosynth.evaluation.config import DEFAULT_EXTRACTOR, DEFAULTS, FIELDS, STAGE_DEFAULTS, EvalConfig

pytestmark = pytest.mark.unit


def test_defaults_and_round_trip_through_json():
    assert DEFAULTS.extractor == DEFAULT_EXTRACTOR == "inception-fid"
    assert DEFAULTS.metrics == "fid,kid,precision_recall,density_coverage"
    assert (DEFAULTS.tstr, DEFAULTS.tsne, DEFAULTS.knn, DEFAULTS.report) == ("off", False, 0, False)
    assert (STAGE_DEFAULTS.tstr, STAGE_DEFAULTS.tsne, STAGE_DEFAULTS.knn, STAGE_DEFAULTS.report) == ("auto", True, 5, True)
    cfg = EvalConfig(split="val", n_fake=20, metric_options={"kid_subsets": 5}, tstr="on", tstr_options={"epochs": 1})
    d = json.loads(json.dumps(cfg.to_dict()))  # JSON-only values: no None, no Path
    assert set(d) == set(FIELDS) and EvalConfig.from_dict(d) == cfg


def test_from_dict_keeps_the_base_and_restores_ints_from_kfp_doubles():
    cfg = EvalConfig.from_dict({"n_fake": 64.0, "tstr_options": {"epochs": 2.0, "lr": 1e-3}}, base=STAGE_DEFAULTS)
    assert cfg.n_fake == 64 and isinstance(cfg.n_fake, int) and cfg.tstr_options == {"epochs": 2, "lr": 1e-3}
    assert isinstance(cfg.tstr_options["epochs"], int) and cfg.tstr == "auto" and cfg.knn == 5
    cfg.metric_options["kid_subsets"] = 1  # each config owns its dicts: the base is untouched
    assert STAGE_DEFAULTS.metric_options == {}


def test_cli_values_are_normalised():
    cfg = EvalConfig.from_flags({"metrics": "fid", "weights": Path("w.pt"), "n_fake": None, "cmmd_extractor": None, "bundle": "x"}, tstr_options=None)
    assert (cfg.metrics, cfg.weights, cfg.n_fake, cfg.cmmd_extractor, cfg.tstr_options) == ("fid", "w.pt", 0, "", {})
    assert EvalConfig(metrics=["fid", "is"]).metrics == "fid,is"


def test_bad_options_name_the_problem():
    with pytest.raises(ConfigError, match=r"unknown evaluation option\(s\) \['n_fakes'\]") as e:
        EvalConfig.from_dict({"n_fakes": 3})
    assert "n_fake" in e.value.hint and "tstr_options" in e.value.hint
    with pytest.raises(HistosynthError, match="tstr='maybe'"):
        EvalConfig(tstr="maybe")
    with pytest.raises(HistosynthError, match="batch_size=0"):
        EvalConfig.from_dict({"batch_size": 0})
    with pytest.raises(ConfigError, match="tstr_options='epochs=2' is not a mapping"):
        EvalConfig(tstr_options="epochs=2")


def test_stage_reads_a_pipeline_dict_over_the_stage_defaults(monkeypatch):
    from histosynth import stages
    from histosynth.evaluation import suite

    seen = {}
    monkeypatch.setattr(suite, "evaluate_generator", lambda bundle, real, config, **kw: seen.update(config=config, **kw) or {})
    stages.evaluate_stage("b", "s", "", "uri", "out.jsonl", {"n_fake": 64.0, "tstr": "off", "report": False}, artifacts_dir="art")
    cfg = seen.pop("config")
    assert (cfg.n_fake, cfg.tstr, cfg.knn, cfg.tsne) == (64, "off", 5, True)
    assert seen == {"report": True, "out_jsonl": "out.jsonl", "mlflow_run_id": None, "tracking_uri": "uri", "artifacts_dir": "art"}  # the step publishes the report
