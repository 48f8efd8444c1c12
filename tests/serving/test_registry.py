"""Registry round trips: register -> alias -> resolve -> export, on the local SQLite store and a real mlflow server."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from histosynth import registry
from histosynth.export.onnx import PARITY_TAG, export_registered
from histosynth.registry import RegistryError


def _round_trip(bundles, expect_scheme: str):
    mv = registry.register_generator(bundles["cgen"], "dcgan-test", alias="candidate", tags={"dataset": "demo"}, description="tiny")
    assert int(mv.version) == 1 and mv.source.startswith(expect_scheme) and mv.source.endswith("/generator")
    assert mv.aliases == ["candidate"] and mv.description == "tiny"
    assert mv.tags["dataset"] == "demo" and json.loads(mv.tags["classes"]) == ["benign", "invasive", "normal"]
    assert mv.tags["num_classes"] == "3" and len(mv.tags["bundle_sha256"]) == 64

    # a second version from the same run (the path `histosynth register --run-id` takes after training)
    mv2 = registry.register_generator(None, "dcgan-test", run_id=mv.run_id)
    assert int(mv2.version) == 2 and mv2.run_id == mv.run_id

    for kwargs in ({"alias": "candidate"}, {"version": 2}, {}):
        path = registry.resolve_generator("dcgan-test", **kwargs)
        assert path.name == "generator.pt" and path.read_bytes() == bundles["cgen"].read_bytes()
    registry.set_alias("dcgan-test", "candidate", 2)
    assert int(registry.get_model_version("dcgan-test", alias="candidate").version) == 2

    res = export_registered("dcgan-test", alias="candidate")
    assert res["version"] == 2 and not res["cached"] and res["report"]["max_abs_diff"] < 1e-4
    client = MlflowClient()
    assert sorted(a.path for a in client.list_artifacts(mv.run_id, "onnx")) == ["onnx/model.onnx", "onnx/parity.json"]
    assert float(client.get_model_version("dcgan-test", "2").tags[PARITY_TAG]) < 1e-4
    assert export_registered("dcgan-test", version=2)["cached"]
    return mv


@pytest.mark.integration
def test_round_trip_sqlite(bundles, isolated_state):
    mv = _round_trip(bundles, "file://")
    # artifacts live in the project-local state folder, not in ./mlruns
    assert str(isolated_state / "home" / "mlartifacts") in mv.source
    cached = registry.resolve_generator("dcgan-test", version=1)
    mtime = cached.stat().st_mtime_ns
    assert registry.resolve_generator("dcgan-test", version=1).stat().st_mtime_ns == mtime  # cache hit


@pytest.mark.integration
@pytest.mark.slow
def test_round_trip_mlflow_server(bundles, mlflow_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    _round_trip(bundles, "mlflow-artifacts:/")


@pytest.mark.integration
def test_registry_errors(bundles, tmp_path):
    with pytest.raises(RegistryError, match="no registered model 'ghost'"):
        registry.resolve_generator("ghost")
    mv = registry.register_generator(bundles["gen"], "g")
    with pytest.raises(RegistryError, match="has no version 9") as e:
        registry.resolve_generator("g", version=9)
    assert "versions: 1" in e.value.hint
    with pytest.raises(RegistryError, match="has no alias 'prod'"):
        registry.resolve_generator("g", alias="prod")
    with pytest.raises(RegistryError, match="already has a generator artifact"):
        registry.register_generator(bundles["gen"], "g", run_id=mv.run_id)
    with pytest.raises(RegistryError, match="run 'deadbeef' not found"):
        registry.register_generator(None, "g", run_id="deadbeef")
    with pytest.raises(RegistryError, match="nothing to register"):
        registry.register_generator(None, "g")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    with pytest.raises(Exception, match="not a readable generator bundle"):
        registry.register_generator(bad, "g")
    assert len(MlflowClient().search_model_versions("name='g'")) == 1  # the bad bundle was not registered
    # a run without a generator artifact (e.g. a training run that crashed before saving one)
    empty = MlflowClient().create_run(MlflowClient().get_experiment_by_name("histosynth").experiment_id).info.run_id
    with pytest.raises(RegistryError, match="has no generator/generator.pt artifact"):
        registry.register_generator(None, "g", run_id=empty)
    registry.register_generator(bundles["gen"], "g", run_id=empty)  # ... unless a bundle is logged to it
    assert int(registry.get_model_version("g").version) == 2
