"""The ablation switches (benchmarks/masan_ablation.py): model.masan_attention=false drops G's attention layers,
model.san=false gives D a plain linear head trained on the GAN loss alone; both reach the bundle spec; other
architectures refuse them."""

from __future__ import annotations

import pytest
import torch

from histosynth.config import LossConfig, load_config
from histosynth.errors import ConfigError
from histosynth.gan.losses import loss_from_config
from histosynth.gan.masan import EfficientMultiScaleAttention, MASANObjective
from histosynth.gan.nets import build_discriminator, build_generator
from histosynth.gan.train.trainer import discriminator_spec, generator_spec

pytestmark = pytest.mark.unit
HINGE = loss_from_config(LossConfig(name="hinge"))


def test_generator_without_attention(tiny_spec):
    full, bare = build_generator(tiny_spec(64)), build_generator({**tiny_spec(64), "attention": False})
    assert any(isinstance(m, EfficientMultiScaleAttention) for m in full.modules())
    assert not any(isinstance(m, EfficientMultiScaleAttention) for m in bare.modules())
    with torch.no_grad():
        assert bare(torch.randn(2, 16), torch.tensor([0, 1])).shape == (2, 3, 64, 64)


def test_plain_head_trains_on_the_gan_loss_alone(tiny_spec):
    torch.manual_seed(0)
    D = build_discriminator({**tiny_spec(64), "san": False}).eval()
    real, fake, y = torch.rand(4, 3, 64, 64) * 2 - 1, torch.rand(4, 3, 64, 64) * 2 - 1, torch.tensor([0, 1, 1, 0])
    t = MASANObjective(HINGE, recon_weight=0.0)(D, real, fake, y)
    h = D.features(real)[0]
    torch.testing.assert_close(D(real, y), (h * D.san.weight[y]).sum(1))  # unnormalised rows: an ordinary linear head
    torch.testing.assert_close(t.loss_real, torch.relu(1 - D(real, y)).mean())
    assert t.metrics == {} and float(t.extra) == 0.0
    (t.loss_real + t.loss_fake).backward()
    assert D.san.weight.grad.abs().sum() > 0 and D.stem[0].weight_orig.grad is not None  # head and features alike


def test_switches_reach_the_specs_and_default_to_full_masan():
    full = load_config(None, ["model.arch=masan", "data.image_size=64"])
    off = load_config(None, ["model.arch=masan", "data.image_size=64", "model.masan_attention=false", "model.san=false"])
    assert generator_spec(full, 2)["attention"] and discriminator_spec(full, 2)["san"]
    assert not generator_spec(off, 2)["attention"] and not discriminator_spec(off, 2)["san"]
    assert "attention" not in generator_spec(load_config(None), 2)  # other architectures' bundles are unchanged
    with pytest.raises(ConfigError, match="model.san=false with model.arch=dcgan"):
        load_config(None, ["model.san=false"])
