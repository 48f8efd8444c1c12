"""The DDPM baseline in the GAN harness: `histosynth train -c configs/ddpm-samples.yaml` (tiny sizes) tracks a run,
writes a bundle that evaluation scores and the registry registers, and that export refuses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch

from histosynth.config import load_config
from histosynth.errors import ConfigError
from histosynth.gan.nets import build_generator

ROOT = Path(__file__).resolve().parents[2]
# tests only: a 2-level UNet of 8 channels, 50 diffusion steps, 2 DDIM steps (seconds on a CPU)
TINY_DDPM = ["data.image_size=32", "ddpm.base_channels=8", "ddpm.levels=2", "ddpm.attention=false", "ddpm.train_timesteps=50", "ddpm.sample_steps=2"]
SPEC = {"arch": "ddpm", "image_size": 32, "channels": 3, "latent_dim": 3 * 32 * 32, "base_channels": 8, "levels": 2, "attention": False, "train_timesteps": 50, "sample_steps": 2}


def histosynth(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "histosynth"
    return subprocess.run([str(exe), *args], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=600)


@pytest.mark.unit
def test_ddim_sampling_is_a_deterministic_generator_of_the_noise():
    torch.manual_seed(0)
    g = build_generator(SPEC).eval()
    z = torch.randn(3, SPEC["latent_dim"])
    a, b = g(z), g(z)
    assert a.shape == (3, 3, 32, 32) and torch.equal(a, b) and a.min() >= -1 and a.max() <= 1
    assert not torch.equal(g(torch.randn(3, SPEC["latent_dim"])), a)
    loss = g.noise_loss(torch.rand(4, 3, 32, 32) * 2 - 1)
    loss.backward()
    assert loss.item() > 0 and all(p.grad is not None for p in g.unet.parameters() if p.requires_grad)


@pytest.mark.unit
def test_ddpm_config_errors():
    with pytest.raises(ConfigError, match="RL-EO reward shapes a GAN discriminator"):
        load_config(ROOT / "configs" / "ddpm-samples.yaml", ["rl_eo.enabled=true"])
    with pytest.raises(ConfigError, match="ddpm.sample_steps=80 must be in"):
        build_generator({**SPEC, "sample_steps": 80})
    with pytest.raises(ConfigError, match="cannot be halved 6 times"):
        build_generator({**SPEC, "levels": 7})


@pytest.mark.integration
@pytest.mark.slow
def test_ddpm_trains_tracked_evaluated_registered_and_refused_by_export(store_root, tracking_uri, tmp_path):
    out = tmp_path / "run"
    sets = [*TINY_DDPM, f"data.root={store_root}", "data.hflip=false", "data.vflip=false", "train.batch_size=8", "train.max_steps=4", "train.log_every=2",
            "train.n_samples=4", "train.device=cpu", f"train.out_dir={out}", f"tracking.tracking_uri={tracking_uri}"]  # fmt: skip
    proc = histosynth("train", "-c", "configs/ddpm-samples.yaml", *[a for s in sets for a in ("-s", s)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    (run,) = client.search_runs(client.get_experiment_by_name("histosynth").experiment_id, "tags.`histosynth.method` = 'ddpm'")
    assert run.data.params["ddpm.sample_steps"] == "2" and run.data.tags["histosynth.serving"].startswith("not exported or served")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [2, 4]
    arts = {a.path for d in ("plots", "samples", "generator") for a in client.list_artifacts(run.info.run_id, d)}
    assert {"plots/loss_curve.png", "samples/final.png", "generator/generator.pt"} <= arts

    from histosynth.evaluation.suite import evaluate_generator

    rec = evaluate_generator(out / "generator", store_root, split="train", n_fake=16, n_real=16, metrics="fid,kid,pr", device="cpu", batch_size=16, metric_options={"kid_subsets": 5})
    assert {"fid", "kid_mean", "precision", "recall", "f1"} <= set(rec["metrics"]) and rec["metrics"]["fid"] > 0

    from histosynth.registry import register_generator

    mv = register_generator(None, "tiny-ddpm", run_id=run.info.run_id, tracking_uri=tracking_uri)
    assert int(mv.version) == 1

    for cmd in (["export", "--bundle", str(out / "generator")], ["serve", "--bundle", str(out / "generator"), "--build-only", "--repo", str(tmp_path / "repo")]):
        proc = histosynth(*cmd)
        assert proc.returncode == 2, cmd
        assert "is a DDPM: it is not exported to ONNX or served through Triton" in proc.stderr and "fix: score it with histosynth evaluate" in proc.stderr
    assert not (out / "generator" / "model.onnx").exists() and not (tmp_path / "repo").exists()
