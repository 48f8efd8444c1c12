"""EMA of generator weights: the averaging formula with its warm-up, and what the trainer does with it."""

from __future__ import annotations

import pytest
import torch

from histosynth.gan.bundle import load_generator
from histosynth.config import load_config
from histosynth.gan.weight_ema import GeneratorEMA
from histosynth.errors import ConfigError
from histosynth.gan.train import load_checkpoint, train


@pytest.mark.numerics
def test_ema_formula_with_warmup_and_copied_buffers():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.BatchNorm1d(2))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    ema = GeneratorEMA(net, 0.9)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0) < 0.9: warm-up
    expected = torch.ones(2, 2)
    for t, value in enumerate([3.0, 5.0, -1.0] + [2.0] * 100):
        with torch.no_grad():
            net[0].weight.fill_(value)
            net[1].running_mean.fill_(value)
        d = min(0.9, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * value
        ema.update(net)
        assert torch.allclose(ema.model[0].weight, expected, atol=1e-6)
        assert torch.equal(ema.model[1].running_mean, net[1].running_mean)  # buffers copied, not averaged
    assert ema.current_decay() == 0.9
    assert not any(p.requires_grad for p in ema.model.parameters())
    restored = GeneratorEMA(net, 0.9)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == ema.updates and torch.equal(restored.model[0].weight, ema.model[0].weight)
    with pytest.raises(ConfigError, match="ema_decay"):
        load_config(None, ["train.ema_decay=1.0"])


@pytest.mark.integration
def test_trainer_bundles_the_ema_generator(make_cfg):
    result = train(make_cfg(None, "train.ema_decay=0.99", "train.max_steps=6"), progress=False)
    ckpt = load_checkpoint(result.checkpoint)
    ema_state, raw = ckpt["generator_ema"]["model"], ckpt["generator"]
    assert ckpt["generator_ema"]["updates"] == 6
    gen, meta = load_generator(result.bundle)
    assert meta["extra"]["ema_decay"] == 0.99
    bundled = gen.state_dict()
    params = {k for k, _ in gen.named_parameters()}
    assert all(torch.equal(bundled[k], ema_state[k]) for k in params)
    weights = [k for k in raw if k.endswith("weight")]
    assert any(not torch.equal(raw[k], ema_state[k]) for k in weights), "the bundle must hold the average, not the live G"
    # batch-norm statistics: the average's own (standing statistics), not the live G's copied ones
    means = [k for k in bundled if k.endswith("running_mean")]
    assert means and all(not torch.equal(bundled[k], raw[k]) for k in means)
    cfg = make_cfg(None, "train.ema_decay=0.99")
    again = GeneratorEMA(gen.to(memory_format=torch.channels_last), 0.99)  # as the trainer holds it: same rounding
    again.model.load_state_dict(ema_state)
    again.standing_stats(cfg.model.latent_dim, 0, seed=cfg.train.seed)
    assert all(torch.equal(bundled[k], v) for k, v in again.model.state_dict().items())


class _ClassShift(torch.nn.Module):
    """A batch norm after a per-class offset (0 or 10): its running mean is the class mix it saw."""

    def __init__(self):
        super().__init__()
        self.offset = torch.nn.Embedding(2, 1)
        with torch.no_grad():
            self.offset.weight.copy_(torch.tensor([[0.0], [10.0]]))
        self.bn = torch.nn.BatchNorm1d(1)

    def forward(self, z, y):
        return self.bn(self.offset(y) + 0.0 * z[:, :1])


@pytest.mark.numerics
def test_standing_stats_follow_the_training_class_mix():
    ema = GeneratorEMA(_ClassShift(), 0.9)
    ema.standing_stats(4, 2, seed=0)
    assert ema.model.bn.running_mean.item() == pytest.approx(5.0, abs=0.5)  # uniform: half the draws are class 1
    ema.standing_stats(4, 2, seed=0, class_freq=[30, 10])
    assert ema.model.bn.running_mean.item() == pytest.approx(2.5, abs=0.5)  # a quarter are
    ema.standing_stats(4, 2, seed=0, class_freq=[7, 0])
    assert ema.model.bn.running_mean.item() == 0.0 and ema.model.bn.running_var.item() == 0.0
    for bad in ([1.0], [1.0, -1.0], [0, 0]):
        with pytest.raises(ValueError, match="class_freq"):
            ema.standing_stats(4, 2, class_freq=bad)


@pytest.mark.integration
def test_trainer_estimates_the_average_s_statistics_on_the_training_class_mix(make_cfg, lopsided_store_root):
    """Fakes take the real batch's labels, so the bundle's shared batch norms must be estimated on the training
    store's class mix (32 : 11), not on uniform classes."""
    cfg = make_cfg(None, f"data.root={lopsided_store_root}", "data.conditional=true", "model.g_cond_bn=true", "train.ema_decay=0.99", "train.max_steps=4")
    result = train(cfg, progress=False)
    gen, _ = load_generator(result.bundle)
    bundled = gen.state_dict()
    ema_state = load_checkpoint(result.checkpoint)["generator_ema"]["model"]

    def restat(class_freq):
        again = GeneratorEMA(gen.to(memory_format=torch.channels_last), 0.99)
        again.model.load_state_dict(ema_state)
        again.standing_stats(cfg.model.latent_dim, 2, seed=cfg.train.seed, class_freq=class_freq)
        return again.model.state_dict()

    means = [k for k in bundled if k.endswith("running_mean")]
    assert means and all(torch.equal(bundled[k], v) for k, v in restat([32, 11]).items())
    uniform = restat(None)
    assert any(not torch.equal(bundled[k], uniform[k]) for k in means)
