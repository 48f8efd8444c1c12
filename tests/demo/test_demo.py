"""The logic of `make demo` (scripts/demo.py) without running the demo: alias safety on a real MLflow registry,
one output folder per run, DEMO_PORT, the metrics summary and the real-vs-synthetic grid."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from histosynth.errors import HistosynthError

ROOT = Path(__file__).resolve().parents[2]
SPEC = {"arch": "dcgan", "image_size": 32, "latent_dim": 16, "g_features": 8, "channels": 3, "num_classes": 0}


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("histosynth_demo_script", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.unit
def test_each_run_gets_its_own_folder_and_latest_follows(demo, tmp_path):
    base = tmp_path / "demo-output"
    first = demo.new_run_dir(base)
    (first / "000000.png").write_bytes(b"earlier run")
    second = demo.new_run_dir(base)  # same second: a suffixed folder, the first one untouched
    assert first != second and (first / "000000.png").read_bytes() == b"earlier run"
    assert demo.point_latest(base, first) is None and demo.point_latest(base, second) is None
    assert (base / "latest").resolve() == second.resolve()
    (base / "latest").unlink()
    (base / "latest").mkdir()  # a folder the user made: never replaced
    (base / "latest" / "mine.txt").write_text("keep")
    assert "not the demo's link" in demo.point_latest(base, first)
    assert (base / "latest" / "mine.txt").read_text() == "keep"


@pytest.mark.unit
def test_demo_port_is_read_and_checked(demo):
    with pytest.raises(HistosynthError, match="not a port number"):
        demo.demo_ports({"DEMO_PORT": "http"})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(HistosynthError, match=rf"port\(s\) \[{port}\] already in use"):
            demo.demo_ports({"DEMO_PORT": str(port)})
    base = next(p for p in range(20000, 30000, 3) if all(demo.port_free(p + i) for i in range(3)))
    assert demo.demo_ports({"DEMO_PORT": str(base)}) == (base, base + 1, base + 2)
    assert len(demo.demo_ports({})) == 3


@pytest.mark.unit
def test_a_bad_demo_port_exits_2_before_any_step(demo, monkeypatch, capsys):
    monkeypatch.setenv("DEMO_PORT", "99999")
    monkeypatch.setenv("PATH", os.environ["PATH"])  # run() prepends the venv's bin; restored after the test
    assert demo.main() == 2
    err = capsys.readouterr().err
    assert "error: DEMO_PORT='99999' is not a port number" in err and "fix: set DEMO_PORT" in err


def _register(tmp_path, client, uri, name):
    from histosynth import registry
    from histosynth.gan.bundle import save_generator
    from histosynth.gan.nets import build_generator

    g = build_generator(SPEC)
    bundle = save_generator(tmp_path / f"g{len(list(tmp_path.glob('g*')))}", g, SPEC, [])
    return int(registry.register_generator(bundle, name, tracking_uri=uri).version)


@pytest.mark.integration
def test_the_demo_never_moves_a_candidate_someone_else_uses(demo, tmp_path):
    """A real (SQLite) MLflow registry: the demo keeps `candidate` only while it alone set it."""
    from mlflow import MlflowClient

    from histosynth import defaults

    uri = defaults.mlflow_tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = demo.MODEL
    assert demo.choose_alias(client, name) == ("candidate", None)  # no model yet
    v1 = _register(tmp_path, client, uri, name)
    client.set_registered_model_alias(name, "candidate", str(v1))
    client.set_registered_model_tag(name, demo.ALIAS_TAG, str(v1))  # what the demo records after setting it
    assert demo.choose_alias(client, name) == ("candidate", None)

    client.set_registered_model_alias(name, "champion", str(v1))  # the user promoted the demo's candidate
    alias, note = demo.choose_alias(client, name)
    assert alias.startswith("candidate-") and f"{name}@candidate is version {v1}, which also carries champion" in note

    client.delete_registered_model_alias(name, "champion")
    v2 = _register(tmp_path, client, uri, name)
    client.set_registered_model_alias(name, "candidate", str(v2))  # moved by hand, not by the demo
    alias, note = demo.choose_alias(client, name)
    assert alias != "candidate" and "outside the demo" in note

    run_id = client.get_model_version(name, str(v2)).run_id
    for key, value in (("test/fid", 402.5), ("test/kid_mean", 0.41), ("test/precision", 0.0)):
        client.log_metric(run_id, key, value)
    m = demo.candidate_metrics(client, name, "candidate")
    assert m["version"] == v2 and m["fid"] == 402.5 and m["recall"] is None
    text = "\n".join(demo.quality_lines(m))
    assert "FID            402.5   real-vs-real floor of this data: 95.8 (val vs test, 213 vs 213)" in text
    assert "KID           0.4100   real-vs-real floor: 0.0031" in text and "recall    not logged" in text
    assert "DCGAN 57.45, RL-EO 44.04" in text and "not comparable one-to-one" in text

    # the gates' verdict as a dry run: this never-exported, collapsed version is refused, and no alias moves
    verdict = "\n".join(demo.promotion_verdict(v2))
    assert "FAIL fid           test/fid = 402.5; needs <= 150" in verdict and "FAIL recall" in verdict and "FAIL parity" in verdict
    assert f"verdict: {name} v{v2} would be REFUSED (fid, precision, recall, parity, memorization)" in verdict
    assert set(client.get_registered_model(name).aliases) == {"candidate"}


@pytest.mark.unit
def test_comparison_grid_has_as_many_real_as_synthetic(demo, tmp_path):
    from histosynth.data.store import Patch, write_store
    from histosynth.evaluation.diagnostics.compare import GAP, panel_size
    from histosynth.evaluation.diagnostics.knn import PAD

    rng = np.random.default_rng(0)
    write_store(tmp_path / "splits" / "test", (Patch(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), "tissue", {"slide": f"s{i}"}) for i in range(12)), classes=["tissue"], provenance={"kind": "test"})
    synth = tmp_path / "synthetic"
    synth.mkdir()
    for i in range(5):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(synth / f"{i:06d}.png")
    (synth / "manifest.json").write_text(json.dumps({"images": [{"file": f"{i:06d}.png", "index": i} for i in range(5)]}))
    path = demo.write_comparison(synth, tmp_path / "splits", tmp_path / "run" / "real_vs_synthetic.png")
    _, pw, ph = panel_size(5, 64)
    with Image.open(path) as im:
        assert im.size == (2 * pw + GAP + 2 * PAD, ph + 2 * PAD)
