"""RL-EO modes: ``paper`` changes no gradient; ``weighted`` and ``soft-label`` change D's and only D's."""

from __future__ import annotations

import copy
from pathlib import Path

import mlflow
import pytest
import torch

from histosynth.config import load_config
from histosynth.device import amp_for
from histosynth.errors import ConfigError
from histosynth.gan.losses import get_loss
from histosynth.gan.nets import DCGANDiscriminator, DCGANGenerator, init_dcgan_weights
from histosynth.gan.rl_eo import REWARD_GRADIENT, RLEOReward
from histosynth.gan.train import GANStep, load_checkpoint, train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
W = 0.3


def _models():
    torch.manual_seed(0)
    G = DCGANGenerator(image_size=32, latent_dim=16, features=8)
    D = DCGANDiscriminator(image_size=32, features=8)
    init_dcgan_weights(G), init_dcgan_weights(D)
    return G, D


def _grads_after_one_step(similarity, mode: str | None, loss: str = "bce"):
    """(D's grads, G's grads, metrics) of one step from the same weights, noise and batch; lr=0 keeps D's weights
    for G's backward equal across modes, so G's gradients are comparable."""
    G, D = _models()
    reward = RLEOReward(similarity, W, mode=mode) if mode else None
    kwargs = {"real_label": 0.9} if loss == "bce" else {}
    step = GANStep(G, D, torch.optim.SGD(G.parameters(), lr=0.0), torch.optim.SGD(D.parameters(), lr=0.0), get_loss(loss, **kwargs), latent_dim=16, amp=amp_for(torch.device("cpu")), reward=reward)
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    torch.manual_seed(11)
    m = step([(x, None)])
    return [p.grad.clone() for p in D.parameters()], [p.grad.clone() for p in G.parameters()], m


@pytest.mark.numerics
@pytest.mark.parametrize("loss", ["bce", "lsgan"])
def test_acting_modes_change_d_gradients_only_paper_changes_none(similarity, loss):
    d0, g0, _ = _grads_after_one_step(similarity, None, loss)
    d_paper, g_paper, _ = _grads_after_one_step(similarity, "paper", loss)
    assert all(torch.equal(a, b) for a, b in zip(d0, d_paper))
    for mode in ("weighted", "soft-label"):
        d, g, m = _grads_after_one_step(similarity, mode, loss)
        diff = max((a - b).abs().max().item() for a, b in zip(d0, d))
        assert diff > 1e-6, (mode, diff)  # the reward reaches D's parameters
        assert all(torch.equal(a, b) for a, b in zip(g0, g)), mode  # G's loss never contains the reward
        assert torch.isfinite(m["loss_d"]) and m["loss_d"].item() != m["loss_d_gan"].item()
    assert all(torch.equal(a, b) for a, b in zip(g0, g_paper))


@pytest.mark.numerics
def test_acting_losses_follow_their_equations(similarity):
    """loss_d = mean(l_real) + mean((1 - w s_i) l_fake_i)  or  mean(l_real) + mean(BCE(D(fake_i), w s_i)),
    recomputed by hand from the same fakes and the same D."""
    G, D = _models()
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    torch.manual_seed(11)
    with torch.no_grad():
        fake = G(torch.randn(8, 16))
        real_logits, fake_logits = D(x), D(fake)
    s = similarity(x, fake).clamp(0, 1)
    assert s.std() > 0
    bce = get_loss("bce", real_label=0.9)
    l_real = bce.real_terms(real_logits).mean()
    expected = {
        "weighted": l_real + ((1 - W * s) * torch.nn.functional.softplus(fake_logits)).mean(),
        "soft-label": l_real + (torch.nn.functional.softplus(fake_logits) - W * s * fake_logits).mean(),
    }
    for mode, value in expected.items():
        _, _, m = _grads_after_one_step(similarity, mode)
        assert m["loss_d"].item() == pytest.approx(value.item(), rel=1e-5), mode
        assert m["loss_d_gan"].item() == pytest.approx((l_real + bce.d_fake(fake_logits)).item(), rel=1e-5)
        if mode == "weighted":
            assert m["loss_d"].item() < m["loss_d_gan"].item()  # every fake term scaled by 1 - w s_i <= 1


@pytest.mark.unit
def test_mode_weight_and_loss_are_checked(make_cfg):
    with pytest.raises(ConfigError, match="is not an RL-EO mode") as e:
        load_config(CONFIGS / "rl-eo-samples.yaml", ["rl_eo.mode=reinforce"])
    assert "weighted" in e.value.hint
    with pytest.raises(ConfigError, match="rl_eo.weight=1.5 > 1 with rl_eo.mode=weighted"):
        load_config(CONFIGS / "rl-eo-samples.yaml", ["rl_eo.mode=weighted", "rl_eo.weight=1.5"])
    with pytest.raises(ConfigError, match="needs a loss with a target for fakes, and loss.name=hinge has none"):
        load_config(CONFIGS / "rl-eo-samples.yaml", ["rl_eo.mode=soft-label", "loss.name=hinge"])
    assert load_config(CONFIGS / "rl-eo-samples.yaml", ["rl_eo.mode=weighted", "loss.name=hinge"]).rl_eo.mode == "weighted"
    assert load_config(CONFIGS / "rl-eo-samples.yaml").rl_eo.mode == "paper"  # the paper as written stays the default


@pytest.mark.integration
def test_acting_run_is_tagged_and_trains_d_differently(make_cfg, similarity, tracking_uri):
    """Tiny weighted RL-EO run from the preset: tagged with its mode; its D leaves the plain run's path."""
    steps = ["train.max_steps=3", "train.log_every=1"]
    acting = train(make_cfg(CONFIGS / "rl-eo-samples.yaml", "rl_eo.mode=weighted", *steps), progress=False, similarity=similarity)
    plain = train(make_cfg(CONFIGS / "improved-dcgan-samples.yaml", *steps), progress=False)
    tags = mlflow.MlflowClient(tracking_uri=tracking_uri).get_run(acting.run_id).data.tags
    assert tags["rl_eo.mode"] == "weighted" and tags["rl_eo.reward_gradient"] == REWARD_GRADIENT["weighted"]
    a, b = load_checkpoint(acting.checkpoint), load_checkpoint(plain.checkpoint)
    assert not all(torch.equal(a["discriminator"][k], b["discriminator"][k]) for k in a["discriminator"])
