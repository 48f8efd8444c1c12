"""Gated promotion against a real `mlflow server`: metric margin, absolute FID/precision/recall limits, ONNX parity,
memorization (a generator whose samples are training patches is refused), refusal exit code and messages, dry run,
tags on the version."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from histosynth import registry
from histosynth.gan.bundle import save_generator
from histosynth.data.store import Patch, write_store
from histosynth.export.onnx import export_registered
from histosynth.evaluation.features import Extractor, register_extractor
from histosynth.evaluation.features.base import to_uint8
from histosynth.gan.nets import build_generator, init_dcgan_weights
from histosynth.registry.promote import QUALITY_LIMITS, memorization_gate, PromotionRefused, find_metric, metric_gate, nn_distances, parity_gate, promote, quality_gates, train_nn_scale

SPEC = {"arch": "dcgan", "image_size": 32, "latent_dim": 16, "g_features": 8, "channels": 3, "num_classes": 0}
N_SAMPLES, SEED = 24, 0
EXTRACTOR = "test-pixels"


def _pixels(device, weights=None) -> Extractor:
    """Raw pixels as features, 8x8 average-pooled: cheap, deterministic, and a copied patch is at distance 0."""
    return Extractor(name=EXTRACTOR, dim=3 * 8 * 8, preprocess="avgpool 8x8 of 0..255", forward=lambda x: torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1), device=torch.device("cpu"), note="test only")


@pytest.fixture(autouse=True)
def pixel_extractor():
    """Registered per test, not at import: other test modules may reset the extractor registry."""
    register_extractor(EXTRACTOR, _pixels, overwrite=True)


def _bundle(path, seed):
    torch.manual_seed(seed)
    g = build_generator(SPEC)
    init_dcgan_weights(g)
    return save_generator(path, g, SPEC, [], extra={"note": "test"})


def _samples_as_patches(bundle) -> np.ndarray:
    """Exactly the images the memorization gate draws from this bundle (same seed, same latents), as uint8 NHWC."""
    from histosynth.gan.bundle import load_generator

    g, _ = load_generator(bundle)
    z = torch.randn(N_SAMPLES, SPEC["latent_dim"], generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        return to_uint8(g(z)).permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("promote")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    real = []
    for i in range(48):  # textured "tissue": smooth colour fields plus noise
        base = rng.uniform(60, 220, 3)
        img = base + 30 * np.sin(xx[..., None] / rng.uniform(2, 6) + rng.uniform(0, 6)) + rng.normal(0, 10, (32, 32, 3))
        real.append(np.clip(img, 0, 255).astype(np.uint8))
    honest = _bundle(root / "honest", 0)
    better = _bundle(root / "better", 1)
    copier = _bundle(root / "copier", 2)
    # the copier's training split holds its own samples: every generated patch is a training patch
    clean = root / "clean" / "train"
    write_store(clean, (Patch(p, "tissue", {"slide": f"s{i}"}) for i, p in enumerate(real)), classes=["tissue"], provenance={"kind": "test"})
    leaked = root / "leaked" / "train"
    patches = real + list(_samples_as_patches(copier))
    write_store(leaked, (Patch(p, "tissue", {"slide": f"s{i}"}) for i, p in enumerate(patches)), classes=["tissue"], provenance={"kind": "test"})
    return {"honest": honest, "better": better, "copier": copier, "clean": clean, "leaked": leaked}


def _register(name, bundle, fid, store, export=True, precision=0.6, recall=0.4):
    """What train -> evaluate -> register -> export leave behind: the run's data.store param and test/* metrics
    (``fid`` None: never evaluated, no metrics at all)."""
    mv = registry.register_generator(bundle, name)
    client = MlflowClient()
    client.log_param(mv.run_id, "data.store", str(store))
    if fid is not None:
        for key, value in (("fid", fid), ("precision", precision), ("recall", recall)):
            client.log_metric(mv.run_id, f"test/{key}", value)
    if export:
        export_registered(name, version=int(mv.version))
    return int(mv.version)


KW = dict(extractor=EXTRACTOR, n_samples=N_SAMPLES, seed=SEED, device="cpu")


@pytest.mark.unit
def test_gate_arithmetic():
    assert find_metric({"val/fid": 3.0, "test/fid": 2.0, "epoch/loss_d": 1.0}, "fid") == ("test/fid", 2.0)
    assert find_metric({"train/inception-fid/fid": 5.0}, "fid") == ("train/inception-fid/fid", 5.0)
    assert find_metric({"loss": 1.0}, "fid") is None
    fix = "run `histosynth evaluate ...`"
    gates = quality_gates({"test/fid": 400.0, "test/precision": 0.0, "test/recall": 0.0}, QUALITY_LIMITS, fix)
    assert [(g.name, g.passed) for g in gates] == [("fid", False), ("precision", False), ("recall", False)]
    assert gates[0].detail == "test/fid = 400; needs <= 150" and gates[1].detail == "test/precision = 0; needs >= 0.5"
    gates = quality_gates({"test/fid": 120.0, "test/precision": 0.5, "test/recall": 0.31}, QUALITY_LIMITS, fix)
    assert all(g.passed for g in gates)  # limits are inclusive
    missing = quality_gates({"test/fid": 120.0, "test/recall": float("nan")}, QUALITY_LIMITS, fix)
    assert [g.passed for g in missing] == [True, False, False] and missing[1].values["fix"] == fix
    assert "never evaluated" in missing[1].detail
    g = metric_gate(104.0, 100.0, "fid", 0.05, False, "test/fid", 3)
    assert g.passed and g.values["limit"] == pytest.approx(105.0)
    g = metric_gate(106.0, 100.0, "fid", 0.05, False, "test/fid", 3)
    assert not g.passed and "test/fid = 106 vs champion v3 100: needs <= 105" in g.detail
    assert not metric_gate(0.5, 0.6, "precision", 0.05, True, "test/precision", 1).passed  # higher is better: 0.5 < 0.57
    assert metric_gate(None, None, "fid", 0.05, False, "fid", None).detail.startswith("no finite 'fid'")
    assert parity_gate("2.0e-09", 1e-4).passed and not parity_gate("3e-3", 1e-4).passed and not parity_gate(None, 1e-4).passed
    real = np.random.default_rng(0).normal(size=(50, 4))
    fake = np.vstack([real[:3], real[:3] + 10])
    d = nn_distances(fake, real)
    assert np.allclose(d[:3], 0, atol=1e-6) and (d[3:] > 5).all()
    assert train_nn_scale(np.vstack([real, real[:5]])) > 0.5 * train_nn_scale(real) > 0  # duplicates do not collapse it to 0


@pytest.mark.integration
def test_promotion_gates_on_a_real_server(world, mlflow_server, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    name = "gen-promote"
    v1 = _register(name, world["honest"], 100.0, world["clean"])
    r = promote(name, v1, **KW)
    assert r.promoted and r.previous is None and [g.name for g in r.gates] == ["metric", "fid", "precision", "recall", "parity", "memorization"]
    mem = r.gates[-1].values
    assert mem["min"] > 0.1 and mem["n_train"] == 48 and mem["train_store"] == str(world["clean"])
    assert int(registry.get_model_version(name, alias="champion").version) == v1
    tags = MlflowClient().get_model_version(name, str(v1)).tags
    assert tags["promotion.status"] == "promoted" and tags["promotion.memorization.passed"] == "true"

    # worse FID than the champion beyond the margin: refused, with both numbers; the alias stays
    v2 = _register(name, world["better"], 110.0, world["clean"])
    with pytest.raises(PromotionRefused) as e:
        promote(name, v2, **KW)
    assert "metric: test/fid = 110 vs champion v1 100: needs <= 105" in e.value.problem
    assert int(registry.get_model_version(name, alias="champion").version) == v1
    assert MlflowClient().get_model_version(name, str(v2)).tags["promotion.status"] == "refused"
    # a looser margin lets it through (dry run first: nothing moves, nothing recorded)
    dry = promote(name, v2, margin=0.2, dry_run=True, **KW)
    assert dry.passed and not dry.promoted and int(registry.get_model_version(name, alias="champion").version) == v1
    assert promote(name, v2, margin=0.2, **KW).promoted
    assert int(registry.get_model_version(name, alias="champion").version) == v2

    # the copier: best FID of all, exported, but its samples are training patches -> never promoted
    v3 = _register(name, world["copier"], 50.0, world["leaked"])
    with pytest.raises(PromotionRefused) as e:
        promote(name, v3, **KW)
    assert [g.name for g in e.value.result.failed()] == ["memorization"]
    assert e.value.result.gates[-1].values["min"] == pytest.approx(0.0, abs=1e-9)
    assert "memorization: nearest-neighbour distance to training patches" in e.value.problem and "min 0 (sample 0)" in e.value.problem
    assert int(registry.get_model_version(name, alias="champion").version) == v2
    # ... the same bundle checked against a split that does not contain its samples passes that gate
    assert promote(name, v3, train_data=world["clean"], dry_run=True, **KW).gates[-1].passed

    # never exported: the parity gate fails and says how to fix it
    v4 = _register(name, world["honest"], 90.0, world["clean"], export=False)
    with pytest.raises(PromotionRefused, match="parity: no onnx_parity_max_abs_diff tag"):
        promote(name, v4, **KW)


@pytest.mark.integration
def test_cli_refusal_exit_code_and_dry_run(world, mlflow_server, monkeypatch, capsys):
    """`histosynth promote` in-process (the test extractor is registered in this process): exit 2 with the numbers."""
    from histosynth.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    name = "gen-promote-cli"
    v1 = _register(name, world["honest"], 80.0, world["clean"])
    v2 = _register(name, world["copier"], 70.0, world["leaked"])
    common = ["--extractor", EXTRACTOR, "--n-samples", str(N_SAMPLES), "--device", "cpu"]

    def cli(*args):
        monkeypatch.setattr(sys, "argv", ["histosynth", "promote", name, *args, *common])
        with pytest.raises(SystemExit) as e:
            main()
        return e.value.code, capsys.readouterr()

    code, io = cli("--version", str(v1), "--dry-run", "--json")
    assert code in (0, None)
    res = json.loads(io.out.strip().splitlines()[-1])  # (earlier lines: MLflow run links from registering)
    assert res["passed"] and not res["promoted"] and res["dry_run"]
    code, io = cli("--version", str(v1))
    assert code in (0, None) and f"promoted {name}@champion -> version {v1}" in " ".join(io.out.split())
    code, io = cli("--version", str(v2))
    assert code == 2
    text = " ".join((io.out + io.err).split())
    assert "FAIL memorization" in text and f"error: {name} v{v2} not promoted to 'champion' (1 gate(s) failed)" in text
    assert int(registry.get_model_version(name, alias="champion").version) == v1


@pytest.mark.integration
def test_absolute_quality_gates_judge_without_a_champion(world, mlflow_server, monkeypatch, capsys):
    """No champion yet: a collapsed generator (today's demo numbers) is refused on FID, precision and recall, a
    never-evaluated one is told which `histosynth evaluate` to run, a usable one is promoted; the CLI prints every gate."""
    from histosynth.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    name = "gen-promote-quality"
    bad = _register(name, world["honest"], 400.0, world["clean"], precision=0.0, recall=0.0)
    with pytest.raises(PromotionRefused) as e:
        promote(name, bad, **KW)
    assert [g.name for g in e.value.result.failed()] == ["fid", "precision", "recall"]
    assert "fid: test/fid = 400; needs <= 150" in e.value.problem and "recall: test/recall = 0; needs >= 0.3" in e.value.problem
    with pytest.raises(registry.RegistryError):
        registry.get_model_version(name, alias="champion")
    # the limits are overridable: loosened, the same numbers pass those gates
    loose = promote(name, bad, quality_limits={"max_fid": 500, "min_precision": 0, "min_recall": 0}, dry_run=True, **KW)
    assert loose.passed and not loose.promoted

    never = _register(name, world["honest"], None, world["clean"])
    run_id = registry.get_model_version(name, version=never).run_id
    with pytest.raises(PromotionRefused) as e:
        promote(name, never, **KW)
    assert {"metric", "fid", "precision", "recall"} <= {g.name for g in e.value.result.failed()}
    assert "histosynth evaluate --bundle " in e.value.hint and f"--run-id {run_id}" in e.value.hint

    monkeypatch.setattr(sys, "argv", ["histosynth", "promote", name, "--version", str(bad), "--extractor", EXTRACTOR, "--n-samples", str(N_SAMPLES), "--device", "cpu"])
    with pytest.raises(SystemExit) as code:
        main()
    io = capsys.readouterr()
    text = " ".join((io.out + io.err).split())
    assert code.value.code == 2
    for line in (f"> load {EXTRACTOR} (1)", f"> fake features ({N_SAMPLES})", "> nearest neighbours (1)", "nearest neighbours: 1/1 in "):
        assert line in io.err  # a line per phase of the slow gate, on stderr
    assert "> training-patch features (48)" in io.err or "> training-patch features from the cache (48)" in io.err
    for line in ("FAIL fid test/fid = 400; needs <= 150", "FAIL precision test/precision = 0; needs >= 0.5", "FAIL recall test/recall = 0; needs >= 0.3", "pass parity", "pass memorization"):
        assert line in text

    good = _register(name, world["better"], 120.0, world["clean"], precision=0.55, recall=0.35)
    assert promote(name, good, **KW).promoted
    assert int(registry.get_model_version(name, alias="champion").version) == good


@pytest.mark.integration
def test_memorization_gate_caches_training_features(world, private_cache):
    """The training-patch features (the slow part) come from the evaluation feature cache the second time, and the
    verdict is the same."""
    runs = []
    for _ in range(2):
        phases = []
        gate = memorization_gate(world["copier"], world["leaked"].parent, 0.05, N_SAMPLES, 10_000, EXTRACTOR, SEED, "cpu", progress=lambda p, d, t: phases.append(p))
        runs.append((gate, phases))
    (first, p1), (second, p2) = runs
    assert "training-patch features" in p1 and "training-patch features from the cache" not in p1
    assert "training-patch features from the cache" in p2 and "training-patch features" not in p2
    assert not first.passed and first.values == second.values  # the copier is refused both times, same numbers
