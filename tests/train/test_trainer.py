"""The training loop on a fixed synthetic store: MLflow record, learning signal, exact resume, errors."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from histosynth.gan.bundle import load_generator
from histosynth.data.store import PatchStore
from histosynth.device import seed_everything
from histosynth.errors import ConfigError, DataError, HistosynthError, ServerError
from histosynth.gan.losses import loss_from_config
from histosynth.gan.train import build_models, load_checkpoint, train


def _client(uri: str) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _d_loss(cfg, G, D, real: torch.Tensor, z: torch.Tensor) -> float:
    """BCE D loss on a fixed real batch and G(z), batch statistics (train mode), no updates."""
    loss = loss_from_config(cfg.loss)
    G.train(), D.train()
    with torch.no_grad():
        return loss.d_loss(D(real), D(G(z))).item()


@pytest.mark.integration
def test_tiny_run_learns_and_records_everything_in_mlflow(make_cfg, store_root, tracking_uri):
    # no DiffAugment: the learning-signal check below scores D on plain images (augmentation has its own tests)
    cfg = make_cfg("train.epochs=4", "train.sample_every=2", "train.checkpoint_every=2", "augment.policy=none")
    result = train(cfg, progress=False)

    # 48 patches / batch 8 = 6 steps per epoch
    assert (result.steps, result.epochs) == (24, 4)
    for path in (result.bundle, result.checkpoint, result.samples, result.loss_curve, result.out_dir / "samples" / "epoch_0002.png"):
        assert Path(path).is_file(), path
    assert all(np.isfinite(result.metrics[k]) for k in ("loss_d", "loss_g", "d_real", "d_fake"))

    # learning signal: on a fixed real batch and fixed noise, D's loss is lower than at initialisation
    store = PatchStore(store_root / "train")
    real = torch.from_numpy(np.array(store.images[:16])).permute(0, 3, 1, 2).float() / 127.5 - 1
    z = torch.randn(16, cfg.model.latent_dim, generator=torch.Generator().manual_seed(7))
    seed_everything(cfg.train.seed)
    G0, D0 = build_models(cfg, 0, torch.device("cpu"))  # the run's initial weights (same seed, same order)
    ckpt = load_checkpoint(result.checkpoint)
    G1, D1 = build_models(cfg, 0, torch.device("cpu"))
    G1.load_state_dict(ckpt["generator"]), D1.load_state_dict(ckpt["discriminator"])
    assert _d_loss(cfg, G1, D1, real, z) < _d_loss(cfg, G0, D0, real, z)

    # the bundle rebuilds a generator whose samples vary with z
    gen, meta = load_generator(result.bundle)
    assert meta["spec"] == {"arch": "dcgan", "image_size": 32, "latent_dim": 16, "g_features": 8, "channels": 3, "num_classes": 0, "upsample": "resize"}
    assert meta["classes"] == ["benign", "invasive"]
    assert meta["extra"]["run_id"] == result.run_id and meta["extra"]["data_manifest_hash"] == store.manifest_hash
    with torch.no_grad():
        imgs = gen(torch.randn(8, 16))
    assert imgs.shape == (8, 3, 32, 32) and imgs.abs().max() <= 1
    assert imgs.std(dim=0).mean() > 1e-3, "generator output does not depend on z"

    # MLflow: params, manifest hash, per-step and per-epoch metrics, artifacts, environment tags
    client = _client(tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    for key, value in cfg.flat().items():
        assert key in params, key
    assert params["train.batch_size"] == "8" and params["loss.name"] == "bce" and params["data.image_size"] == "32"
    assert params["data.manifest_hash"] == store.manifest_hash == run.data.tags["data.manifest_hash"]
    assert params["data.count"] == "48" and params["train.steps_per_epoch"] == "6"
    tags = run.data.tags
    assert tags["env.device"] == "cpu" and tags["env.amp"] == "off" and tags["env.torch.version"] == torch.__version__
    loss_d = client.get_metric_history(result.run_id, "loss_d")
    assert [m.step for m in loss_d] == list(range(2, 25, 2))  # log_every=2
    for name in ("loss_g", "d_real", "d_fake", "grad_norm_d", "grad_norm_g", "img_per_s"):
        assert len(client.get_metric_history(result.run_id, name)) == 12, name
    assert [m.step for m in client.get_metric_history(result.run_id, "epoch/loss_d")] == [1, 2, 3, 4]
    artifacts = {a.path for top in ("", "generator", "samples", "plots", "checkpoints", "data") for a in client.list_artifacts(result.run_id, top)}
    for expected in ("config.yaml", "generator/generator.pt", "generator/spec.json", "samples/final.png", "samples/epoch_0004.png", "plots/loss_curve.png", "checkpoints/last.pt", "data/manifest.json"):
        assert expected in artifacts, (expected, sorted(artifacts))
    local = client.download_artifacts(result.run_id, "generator/generator.pt")
    assert load_generator(local)[1]["spec"]["image_size"] == 32


def _state_equal(a: dict, b: dict) -> list[str]:
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.integration
@pytest.mark.parametrize("lecam", [False, True], ids=["plain", "lecam"])
def test_conditional_resume_is_bit_identical(make_cfg, tracking_uri, lecam):
    """8 steps straight == 3 steps + resume to 6 (an epoch boundary) + resume to 8, on CPU, bit for bit.
    Conditional, with flips: every RNG stream (noise, shuffles, flips) must be restored, and with LeCam its
    moving-average anchors."""
    opts = ("data.conditional=true", "data.hflip=true", "data.vflip=true", "train.epochs=3", "train.sample_every=1", "train.checkpoint_every=1")
    opts += ("loss.lecam_weight=0.1",) if lecam else ()
    straight = train(make_cfg(*opts, "train.max_steps=8"), progress=False)
    first = train(make_cfg(*opts, "train.max_steps=3"), progress=False)
    second = train(make_cfg(*opts, "train.max_steps=6"), resume=first.checkpoint, progress=False)
    third = train(make_cfg(*opts, "train.max_steps=8"), resume=second.checkpoint, progress=False)

    assert (first.steps, second.steps, third.steps, straight.steps) == (3, 6, 8, 8)
    assert (second.epochs, third.epochs) == (1, 1)
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(third.checkpoint)
    assert _state_equal(a["generator"], b["generator"]) == []
    assert _state_equal(a["discriminator"], b["discriminator"]) == []
    assert torch.equal(a["opt_g"]["state"][0]["exp_avg_sq"], b["opt_g"]["state"][0]["exp_avg_sq"])
    assert torch.equal(a["data"]["generator"], b["data"]["generator"])
    assert ("lecam" in a) == lecam
    if lecam:
        assert torch.equal(a["lecam"]["anchor_real"], b["lecam"]["anchor_real"]) and torch.equal(a["lecam"]["anchor_fake"], b["lecam"]["anchor_fake"])
        assert straight.metrics["lecam"] > 0
    ga, _ = load_generator(straight.bundle)
    gb, _ = load_generator(third.bundle)
    assert _state_equal(ga.state_dict(), gb.state_dict()) == []
    # the final sample grids (same fixed noise and weights) are the same files byte for byte
    assert Path(straight.samples).read_bytes() == Path(third.samples).read_bytes()

    tags = _client(tracking_uri).get_run(third.run_id).data.tags
    assert tags["histosynth.resumed_from_run"] == second.run_id and tags["histosynth.resumed_at_step"] == "6"

    # conditional generator: class ids change the output for the same noise
    gen, meta = ga, load_generator(straight.bundle)[1]
    assert meta["spec"]["num_classes"] == 2 and meta["classes"] == ["benign", "invasive"]
    z = torch.randn(4, 16)
    with torch.no_grad():
        diff = (gen(z, torch.zeros(4, dtype=torch.long)) - gen(z, torch.ones(4, dtype=torch.long))).abs().mean()
    assert diff > 1e-4


@pytest.mark.integration
def test_other_losses_and_gradient_penalty_train(make_cfg):
    """The loop is loss-agnostic: WGAN-GP (no D batch norm, d_steps 2) and GANetic run and stay finite."""
    wgan = train(make_cfg("loss.name=wgan", "loss.gp_weight=10", "model.d_batchnorm=false", "optim.d_steps=2", "train.max_steps=3", "optim.grad_clip=0"), progress=False)
    assert wgan.steps == 3 and np.isfinite(wgan.metrics["loss_d"]) and "gp" in wgan.metrics
    ganetic = train(make_cfg("loss.name=ganetic", "train.max_steps=2"), progress=False)
    assert np.isfinite(ganetic.metrics["loss_g"])


@pytest.mark.unit
def test_missing_store_is_a_clear_error(make_cfg, tmp_path):
    with pytest.raises(DataError, match="no patch store") as e:
        train(make_cfg(f"data.root={tmp_path / 'nowhere'}"), progress=False)
    assert "histosynth data" in e.value.hint


@pytest.mark.unit
def test_store_smaller_than_a_batch(make_cfg):
    with pytest.raises(DataError, match="fewer than one batch"):
        train(make_cfg("train.batch_size=64"), progress=False)


@pytest.mark.unit
def test_checkpoint_errors(make_cfg, tmp_path):
    with pytest.raises(HistosynthError, match="not found"):
        train(make_cfg(), resume=tmp_path / "missing.pt", progress=False)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(HistosynthError, match="not a readable checkpoint") as e:
        train(make_cfg(), resume=corrupt, progress=False)
    assert "corrupt" in e.value.problem and "prev.pt" in e.value.hint
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "something/else", "weights": torch.zeros(2)}, foreign)
    with pytest.raises(HistosynthError, match="not a histosynth.checkpoint/1"):
        train(make_cfg(), resume=foreign, progress=False)


@pytest.mark.integration
def test_truncated_checkpoint_and_mismatched_model(make_cfg, tmp_path):
    run = train(make_cfg("train.max_steps=1"), progress=False)
    data = Path(run.checkpoint).read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(HistosynthError, match="not a readable checkpoint"):
        train(make_cfg(), resume=truncated, progress=False)
    with pytest.raises(HistosynthError, match="does not fit this model config"):
        train(make_cfg("model.g_features=16"), resume=run.checkpoint, progress=False)


@pytest.mark.unit
def test_unreachable_tracking_server(make_cfg):
    from histosynth.defaults import mlflow_tracking_uri  # noqa: F401  (import cost outside the timing)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServerError, match="unreachable"):
        train(make_cfg(f"tracking.tracking_uri=http://127.0.0.1:{port}"), progress=False)


@pytest.mark.unit
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_cuda_requested_without_gpu(make_cfg):
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        train(make_cfg("train.device=cuda"), progress=False)
