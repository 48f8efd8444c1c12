"""RL-EO: the reward's value, where it enters D's loss, that it reaches no parameter, its logging and plot."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from histosynth.config import load_config
from histosynth.device import amp_for
from histosynth.errors import ConfigError, HistosynthError
from histosynth.gan.losses import get_loss
from histosynth.gan.nets import DCGANDiscriminator, DCGANGenerator, init_dcgan_weights
from histosynth.gan.rl_eo import RLEOReward
from histosynth.gan.train.similarity import SNN_FIX, load_similarity, reward_from_config
from histosynth.gan.train import GANStep, load_checkpoint, train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
W = 0.3


def _models(seed: int = 0, latent: int = 16):
    torch.manual_seed(seed)
    G = DCGANGenerator(image_size=32, latent_dim=latent, features=8)
    D = DCGANDiscriminator(image_size=32, features=8)
    init_dcgan_weights(G), init_dcgan_weights(D)
    return G, D


def _step(G, D, reward=None, clip=0.1):
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    return GANStep(G, D, opt_g, opt_d, get_loss("bce", real_label=0.9), latent_dim=16, amp=amp_for(torch.device("cpu")), grad_clip=clip, reward=reward)


def _batch(n: int = 8, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 32, 32, generator=g) * 2 - 1
    y = torch.arange(n) % 2
    return x, y


@pytest.mark.numerics
def test_reward_is_w_mean_similarity_and_logged_d_loss_is_ld_minus_reward(similarity):
    G, D = _models()
    G0, D0 = copy.deepcopy(G), copy.deepcopy(D)
    reward = RLEOReward(similarity, W, classes=["benign", "invasive"])
    step = _step(G, D, reward)
    x, y = _batch()

    torch.manual_seed(11)
    m = step([(x, y)])

    # the same fakes (same noise draw), the same D before its update
    torch.manual_seed(11)
    z = torch.randn(8, 16)
    with torch.no_grad():
        fake = G0(z)
        loss = get_loss("bce", real_label=0.9)
        l_d = (loss.d_real(D0(x)) + loss.d_fake(D0(fake))).item()
        sim = similarity(x, fake)
    assert sim.shape == (8,) and 0 <= sim.min() and sim.max() <= 1 and sim.std() > 0
    expected_reward = W * sim.mean().item()
    assert m["rl_eo/reward"].item() == pytest.approx(expected_reward, rel=1e-6)
    assert m["rl_eo/similarity"].item() == pytest.approx(sim.mean().item(), rel=1e-6)
    assert m["loss_d_gan"].item() == pytest.approx(l_d, rel=1e-5)
    assert m["loss_d"].item() == pytest.approx(l_d - expected_reward, rel=1e-5)
    assert m["loss_d"].item() < m["loss_d_gan"].item()

    # per-class accumulators: w * mean similarity of each real class's pairs, then reset
    per_class = reward.window_rewards()
    assert per_class == pytest.approx({"rl_eo/reward/benign": W * sim[y == 0].mean().item(), "rl_eo/reward/invasive": W * sim[y == 1].mean().item()}, rel=1e-6)
    assert reward.window_rewards() == {}
    assert reward.epoch_rewards() == pytest.approx(per_class, rel=1e-6)


@pytest.mark.numerics
@pytest.mark.parametrize("weight", [0.3, 100.0])
def test_reward_reaches_no_parameter_updates_equal_plain_gan(similarity, weight):
    """G never sees the reward, and (frozen SNN, detached fakes) D's gradient does not either: the same D and
    G, stepped with and without the reward, end bit-identical -- whatever the weight."""
    G, D = _models()
    G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
    with_reward = _step(G, D, RLEOReward(similarity, weight))
    plain = _step(G2, D2)
    for seed in (5, 6, 7):
        x, y = _batch(seed=seed)
        torch.manual_seed(seed)
        m1 = with_reward([(x, y)])
        torch.manual_seed(seed)
        m2 = plain([(x, y)])
        assert m1["loss_g"].item() == m2["loss_g"].item()
        assert m1["loss_d_gan"].item() == m2["loss_d"].item()
        assert m1["loss_d"].item() == pytest.approx(m2["loss_d"].item() - m1["rl_eo/reward"].item(), rel=1e-6)
    for a, b in zip(G.state_dict().values(), G2.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(D.state_dict().values(), D2.state_dict().values()):
        assert torch.equal(a, b)
    # the similarity network stayed frozen
    assert all(p.grad is None and not p.requires_grad for p in similarity.parameters())


@pytest.mark.unit
def test_reward_detaches_fakes_even_if_given_a_graph(similarity):
    G, _ = _models()
    fake = G(torch.randn(4, 16))
    assert fake.requires_grad
    out = RLEOReward(similarity, W)(torch.rand(4, 3, 32, 32) * 2 - 1, fake)
    assert not out.reward.requires_grad


@pytest.mark.unit
def test_similarity_contract_is_checked():
    x = torch.zeros(4, 3, 8, 8)
    with pytest.raises(HistosynthError, match=r"shape \(4, 1\) for 4 pairs"):
        RLEOReward(lambda a, b: torch.ones(a.shape[0], 1), W)(x, x)
    with pytest.raises(HistosynthError, match=r"must lie in \[0, 1\]") as e:
        RLEOReward(lambda a, b: torch.full((a.shape[0],), -0.5), W)(x, x)
    assert "(c + 1) / 2" in e.value.hint
    with pytest.raises(ConfigError, match="rl_eo.weight"):
        RLEOReward(lambda a, b: torch.ones(a.shape[0]), -1.0)


@pytest.mark.unit
def test_non_finite_scores_are_left_out_and_reported(caplog):
    def sim(a, b):
        out = torch.full((a.shape[0],), 0.5)
        out[0] = float("nan")
        return out

    reward = RLEOReward(sim, W, classes=["a", "b"])
    x = torch.zeros(4, 3, 8, 8)
    out = reward(x, x, torch.tensor([0, 0, 1, 1]))
    assert out.reward.item() == pytest.approx(W * 0.5) and torch.isfinite(out.reward)
    with caplog.at_level("WARNING", logger="histosynth.gan.rl_eo"):
        got = reward.window_rewards()
    assert got == pytest.approx({"rl_eo/reward/a": W * 0.5, "rl_eo/reward/b": W * 0.5, "rl_eo/nonfinite_pairs": 1.0})
    assert "non-finite" in caplog.text
    assert "rl_eo/nonfinite_pairs" not in reward.epoch_rewards()  # reported once


@pytest.mark.unit
def test_missing_snn_names_the_command_that_makes_one(tmp_path, monkeypatch):
    cfg = load_config(CONFIGS / "rl-eo-samples.yaml")
    assert cfg.rl_eo.enabled and cfg.rl_eo.snn == ""
    with pytest.raises(ConfigError, match="rl_eo.snn is empty") as e:
        reward_from_config(cfg, ["a"], torch.device("cpu"))
    assert "histosynth snn train" in e.value.hint
    with pytest.raises(HistosynthError, match="not found") as e:
        load_similarity(tmp_path / "nope.pt", torch.device("cpu"))
    assert e.value.hint == SNN_FIX
    present = tmp_path / "snn.pt"
    present.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "histosynth.snn", None)  # the SNN package is not importable
    with pytest.raises(HistosynthError, match="similarity network code is missing") as e:
        load_similarity(present, torch.device("cpu"))
    assert "histosynth snn train" in e.value.hint
    # loading goes through histosynth.snn.load_similarity, and what that draws from the RNG stays off the run's
    import types

    from histosynth.gan.rl_eo import CosineSimilarity

    def fake_load(path, device):  # layer init draws from the global RNG, as building the real MFT-SNN does
        return CosineSimilarity(torch.nn.Conv2d(3, 4, 3))

    monkeypatch.setitem(sys.modules, "histosynth.snn", types.SimpleNamespace(load_similarity=fake_load))
    before = torch.random.get_rng_state()
    sim = load_similarity(present, torch.device("cpu"))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert sim(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)).shape == (2,)
    # a disabled RL-EO never touches the SNN
    assert reward_from_config(load_config(CONFIGS / "improved-dcgan-samples.yaml"), ["a"], torch.device("cpu")) is None


def _client(uri: str) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.mark.integration
def test_rl_eo_run_logs_reward_per_step_epoch_class_and_curve(make_cfg, similarity, tracking_uri):
    """A tiny RL-EO run from the preset: reward metrics per log step/epoch/class, the reward-curve PNG in the
    local SQLite MLflow store, and weights bit-identical to the same-seed run without the reward."""
    cfg = make_cfg(CONFIGS / "rl-eo-samples.yaml", "train.max_steps=8", "train.log_every=2", "train.epochs=2")
    result = train(cfg, progress=False, similarity=similarity)
    assert result.steps == 8 and result.reward_curve is not None

    client = _client(tracking_uri)
    run = client.get_run(result.run_id)
    assert run.data.tags["rl_eo.reward_gradient"].startswith("none")
    assert run.data.params["rl_eo.weight"] == "0.3" and run.data.params["rl_eo.enabled"] == "True"
    hist = {k: client.get_metric_history(result.run_id, k) for k in ("rl_eo/reward", "rl_eo/similarity", "loss_d", "loss_d_gan", "rl_eo/reward/benign", "rl_eo/reward/invasive")}
    for k, h in hist.items():
        assert [m.step for m in h] == [2, 4, 6, 8], k
    for r, s, ld, lg in zip(hist["rl_eo/reward"], hist["rl_eo/similarity"], hist["loss_d"], hist["loss_d_gan"]):
        assert 0 < r.value <= 0.3 and r.value == pytest.approx(0.3 * s.value, rel=1e-6)
        assert ld.value == pytest.approx(lg.value - r.value, rel=1e-5, abs=1e-6)  # logged D loss = L_D - reward
    for b, i, r in zip(hist["rl_eo/reward/benign"], hist["rl_eo/reward/invasive"], hist["rl_eo/reward"]):
        # the overall reward is the pair-weighted average of the per-class ones
        assert min(b.value, i.value) - 1e-6 <= r.value <= max(b.value, i.value) + 1e-6
    epoch = client.get_metric_history(result.run_id, "epoch/rl_eo/reward/benign")
    assert [m.step for m in epoch] == [1]  # 6 steps per epoch; the 2nd epoch stopped at step 8

    arts = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert "plots/reward_curve.png" in arts
    png = Path(client.download_artifacts(result.run_id, "plots/reward_curve.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[0] >= 400 and np.asarray(im.convert("L")).std() > 5  # a drawn plot, not a blank

    # the reward accumulators are checkpointed with the run
    assert "rl_eo" in load_checkpoint(result.checkpoint)

    # same seed, same data, RL-EO off: the generator and discriminator end bit-identical
    plain = train(make_cfg(CONFIGS / "improved-dcgan-samples.yaml", "train.max_steps=8", "train.log_every=2", "train.epochs=2"), progress=False)
    a, b = load_checkpoint(result.checkpoint), load_checkpoint(plain.checkpoint)
    for net in ("generator", "discriminator"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net


@pytest.mark.unit
def test_rl_eo_does_not_import_the_snn_package():
    """The similarity network is injected: the SNN is loaded by histosynth.gan.train.similarity, not by rl_eo."""
    import ast
    import inspect

    import histosynth.gan.rl_eo as rl_eo

    tree = ast.parse(inspect.getsource(rl_eo))
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in names if m.startswith("histosynth.snn")]
