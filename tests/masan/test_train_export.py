"""MASAN through the platform: presets, a tiny run of the common trainer, the generator bundle, and the ONNX
export (class id input, per-class parity with PyTorch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from histosynth.config import load_config
from histosynth.errors import ConfigError
from histosynth.export.onnx import export_onnx
from histosynth.gan.bundle import load_generator, save_generator
from histosynth.gan.masan import MASANGenerator
from histosynth.gan.nets import build_generator, init_dcgan_weights

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.unit
def test_presets():
    paper, samples = load_config(CONFIGS / "masan-paper.yaml"), load_config(CONFIGS / "masan-samples.yaml")
    for cfg in (paper, samples):
        assert (cfg.method, cfg.model.arch, cfg.loss.name, cfg.model.spectral_norm, cfg.data.conditional) == ("masan", "masan", "hinge", True, True)
        assert (cfg.optim.lr_g, cfg.optim.lr_d, cfg.augment.policy, cfg.loss.recon_weight) == (2e-4, 2e-4, "color,translation,cutout", 1.0)
    assert (paper.data.image_size, paper.train.batch_size, paper.model.g_features, paper.model.d_features) == (256, 64, 64, 64)
    assert (samples.data.image_size, samples.data.root, samples.train.device) == (64, "data/splits", "auto")
    assert samples.data.classes == ["blood_smear", "he_skin", "he_tumour", "ihc_colon"]


@pytest.mark.unit
def test_config_checks():
    assert load_config(None, ["model.arch=masan", "data.image_size=256"]).data.image_size == 256
    with pytest.raises(ConfigError, match="not supported for model.arch=masan") as e:
        load_config(None, ["model.arch=masan", "data.image_size=32"])
    assert e.value.hint == "use 64, 128 or 256"
    with pytest.raises(ConfigError, match="not supported for model.arch=dcgan"):
        load_config(None, ["data.image_size=256"])
    with pytest.raises(ConfigError, match="rl_eo.enabled"):
        load_config(None, ["model.arch=masan", "rl_eo.enabled=true"])


@pytest.fixture(scope="module")
def masan_bundle(tmp_path_factory):
    torch.manual_seed(0)
    spec = {"arch": "masan", "image_size": 64, "latent_dim": 16, "g_features": 8, "channels": 3, "num_classes": 3}
    G = build_generator(spec)
    init_dcgan_weights(G)
    return save_generator(tmp_path_factory.mktemp("masan-bundle"), G.eval(), spec, ["blood_smear", "he_skin", "ihc_colon"])


@pytest.mark.unit
def test_onnx_export_matches_torch_for_every_class(masan_bundle, tmp_path):
    report = export_onnx(masan_bundle, tmp_path / "onnx", batch_for_check=4)
    assert report["max_abs_diff"] < 1e-4 and report["inputs"] == {"z": ["B", 16], "class_id": ["B"]}
    G, meta = load_generator(masan_bundle)
    assert isinstance(G, MASANGenerator) and meta["spec"]["arch"] == "masan"
    sess = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).standard_normal((5, 16), dtype=np.float32)
    per_class = []
    for k in range(3):
        c = np.full(5, k, dtype=np.int64)
        got, got_u8 = sess.run(["images", "images_uint8"], {"z": z, "class_id": c})
        with torch.no_grad():
            want = G(torch.from_numpy(z), torch.from_numpy(c)).numpy()
        assert got.shape == (5, 3, 64, 64) and got_u8.shape == (5, 64, 64, 3)
        np.testing.assert_allclose(got, want, atol=1e-4)
        per_class.append(got)
    assert np.abs(per_class[0] - per_class[1]).mean() > 1e-4 and np.abs(per_class[1] - per_class[2]).mean() > 1e-4


@pytest.mark.integration
def test_tiny_run_of_the_trainer(store_root, tracking_uri, tmp_path):
    """The samples preset, shrunk: trains through the common loop, logs the SAN/reconstruction terms, writes a
    bundle that rebuilds a conditional MASAN generator, and resumes from its checkpoint."""
    from histosynth.gan.train import train

    tiny = ["model.g_features=8", "model.d_features=8", "model.latent_dim=16", "train.batch_size=8", "train.n_samples=4", "train.device=cpu", "train.log_every=1"]
    base = [f"data.root={store_root}", "data.classes=blood_smear,he_skin", f"tracking.tracking_uri={tracking_uri}", *tiny]
    res = train(load_config(CONFIGS / "masan-samples.yaml", [*base, "train.max_steps=2", f"train.out_dir={tmp_path / 'a'}"]), progress=False)
    assert res.steps == 2 and {"san/loss_dir", "masan/recon_l1", "loss_d", "loss_g"} <= set(res.metrics)
    G, meta = load_generator(res.bundle)
    assert isinstance(G, MASANGenerator) and meta["classes"] == ["blood_smear", "he_skin"] and meta["spec"]["image_size"] == 64
    with torch.no_grad():
        assert G(torch.randn(2, 16), torch.tensor([0, 1])).shape == (2, 3, 64, 64)
    more = train(load_config(CONFIGS / "masan-samples.yaml", [*base, "train.max_steps=3", f"train.out_dir={tmp_path / 'b'}"]), resume=res.checkpoint, progress=False)
    assert more.steps == 3


@pytest.mark.integration
def test_served_by_triton_per_class(masan_bundle, tmp_path):
    """The exported MASAN generator in a real tritonserver (python backend): images per class equal onnxruntime's,
    through the client and through `histosynth synth --class` (the CLI a user runs)."""
    import json
    import socket
    import subprocess
    import sys

    from PIL import Image

    from histosynth.serving import GeneratorClient, TritonServer, build_repository, latents

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    onnx_path = export_onnx(masan_bundle, tmp_path / "onnx")["onnx_path"]
    build_repository(onnx_path, tmp_path / "repo", "masan", 1, max_batch_size=8)
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    z = latents(0, [0, 0, 0], 16)  # one latent, three classes
    c = np.array([0, 1, 2], dtype=np.int64)
    ref_u8 = sess.run(["images_uint8"], {"z": z, "class_id": c})[0]
    with TritonServer(tmp_path / "repo", free_port(), free_port(), free_port(), workdir=tmp_path / "work", extra_args=["--exit-timeout-secs=3"]) as server:
        server.wait_ready(timeout=90)
        with GeneratorClient(server.http_url, "http", model="masan") as client:
            assert client.info.classes == ["blood_smear", "he_skin", "ihc_colon"] and client.info.image_size == 64
            imgs, _ = client.generate(z, c)
        out = tmp_path / "synth"
        exe = str(Path(sys.executable).parent / "histosynth")
        r = subprocess.run([exe, "synth", "--n", "3", "--seed", "5", "--class", "ihc_colon", "--out", str(out), "--url", server.http_url], capture_output=True, text=True, timeout=120)
    assert np.array_equal(imgs, ref_u8) and not np.array_equal(imgs[0], imgs[1])
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["class"] == "ihc_colon" and {e["class"] for e in manifest["images"]} == {"ihc_colon"}
    want = sess.run(["images_uint8"], {"z": latents(5, range(3), 16), "class_id": np.full(3, 2, dtype=np.int64)})[0]
    for i, entry in enumerate(manifest["images"]):  # image i from latent (seed, i) and the class asked for
        with Image.open(out / entry["file"]) as im:
            assert np.array_equal(np.asarray(im.convert("RGB")), want[i])


@pytest.mark.integration
@pytest.mark.slow  # ~40 s on 2 cores: a whole kfp.local run (sample data built inside it, 2 training steps)
@pytest.mark.timeout(900)
def test_train_pipeline_runs_the_masan_preset(tmp_path):
    """`histosynth pipeline run train --config configs/masan-samples.yaml`, shrunk: the preset picks the method, and
    the run trains MASAN, evaluates it (with per-class FID), registers it and exports an ONNX model with a class input."""
    import json
    import os
    import subprocess
    import sys

    from mlflow import MlflowClient

    tiny = ["train.max_steps=2", "model.g_features=8", "model.d_features=8", "model.latent_dim=16", "train.batch_size=8", "train.n_samples=4", "train.device=cpu"]
    exe = str(Path(sys.executable).parent / "histosynth")
    cmd = [exe, "pipeline", "run", "train", "--config", "configs/masan-samples.yaml", *sum((["--set", o] for o in tiny), []), "--data-repo", "", "--model-name", "tiny-masan",
           "--eval-n-fake", "48", "--eval-metrics", "fid", "--eval-tstr", "off", "--no-eval-diagnostics", "--pipeline-root", str(tmp_path / "runs")]  # fmt: skip
    # 48 fakes: the smallest class of the sample test split (~1 in 16 patches) still gets the 2 a per-class FID needs
    proc = subprocess.run(cmd, cwd=CONFIGS.parent, env=dict(os.environ), capture_output=True, text=True, timeout=850)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    runs = tmp_path / "runs"
    G, meta = load_generator(next(runs.rglob("generator.pt")))
    assert isinstance(G, MASANGenerator) and meta["classes"] == ["blood_smear", "he_skin", "he_tumour", "ihc_colon"]
    record = json.loads(next(p for p in runs.rglob("results") if p.is_file()).read_text().splitlines()[-1])
    assert record["model"]["arch"] == "masan" and sum(record["fake_class_counts"].values()) == 48  # in the test split's proportions
    assert {"fid", "fid_class_mean", *(f"fid/{c}" for c in meta["classes"])} <= set(record["metrics"])
    sess = ort.InferenceSession(str(next(runs.rglob("model.onnx"))), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["z", "class_id"]

    uri = f"sqlite:///{Path(os.environ['HISTOSYNTH_HOME']) / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.get_model_version_by_alias("tiny-masan", "candidate")
    run = client.get_run(mv.run_id)
    assert run.data.params["method"] == "masan" and "test/fid/he_skin" in run.data.metrics
