"""The resize generator (``model.upsample=resize``): same interface as the paper's DCGAN, no checkerboard."""

from __future__ import annotations

import pytest
import torch

from histosynth.gan.nets import build_generator, init_dcgan_weights

pytestmark = pytest.mark.unit


def generator(upsample: str, size: int = 64, classes: int = 0, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    G = build_generator({"arch": "dcgan", "image_size": size, "latent_dim": 32, "g_features": 8, "num_classes": classes, "upsample": upsample})
    init_dcgan_weights(G)
    return G.eval()


def nyquist_share(x: torch.Tensor) -> float:
    """Fraction of the images' spectral energy on the highest frequency rows/columns (a period-2 pattern)."""
    n = x.shape[-1] // 2
    power = torch.fft.fft2(x - x.mean(dim=(2, 3), keepdim=True)).abs().pow(2)
    return float(((power[..., n, :].sum(-1) + power[..., :, n].sum(-1)) / power.sum(dim=(2, 3))).mean())


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("upsample", ["resize", "deconv"])
def test_shapes_and_range(size, upsample):
    G = generator(upsample, size, classes=3)
    x = G(torch.randn(2, 32), torch.tensor([0, 2]))
    assert x.shape == (2, 3, size, size) and x.abs().max() <= 1


def test_resize_has_no_checkerboard_where_deconv_has_one():
    z = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        resize = [nyquist_share(generator("resize", seed=s)(z)) for s in range(3)]
        deconv = [nyquist_share(generator("deconv", seed=s)(z)) for s in range(3)]
    assert max(resize) < 0.01, resize  # nearest x2 + 3x3 conv: no period-2 pattern
    assert min(deconv) > 0.1, deconv  # stride-2 transposed conv: strong period-2 pattern at init


def test_old_bundles_without_upsample_rebuild_the_paper_generator():
    G = build_generator({"arch": "dcgan", "image_size": 32, "latent_dim": 8, "g_features": 4})
    assert any(isinstance(m, torch.nn.ConvTranspose2d) and m.stride == (2, 2) for m in G.modules())
    with pytest.raises(ValueError, match="upsample"):
        build_generator({"arch": "dcgan", "image_size": 32, "upsample": "bicubic"})


def test_minibatch_stddev_feature_is_the_group_spread():
    from histosynth.gan.nets.dcgan import minibatch_stddev

    h = torch.randn(8, 3, 4, 4)
    out = minibatch_stddev(h)
    assert out.shape == (8, 4, 4, 4) and torch.equal(out[:, :3], h)
    groups = h.view(4, 2, 3, 4, 4)  # sample i belongs to group i % 2
    expected = groups.var(0, unbiased=False).add(1e-8).sqrt().mean(dim=(1, 2, 3))
    assert torch.allclose(out[:, 3, 0, 0], expected.repeat(4))
    assert torch.allclose(minibatch_stddev(h[:1].repeat(8, 1, 1, 1))[:, 3], torch.full((8, 4, 4), 1e-4))  # no spread


def test_discriminator_with_minibatch_stddev_sees_collapse():
    from histosynth.gan.nets import build_discriminator

    torch.manual_seed(0)
    D = build_discriminator({"arch": "dcgan", "image_size": 32, "d_features": 4, "spectral_norm": True, "d_minibatch_std": True})
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    collapsed = x[:1].repeat(8, 1, 1, 1)
    # the same image scores differently alone-in-a-diverse-batch vs in a collapsed batch: D can tell
    assert not torch.allclose(D(x)[0], D(collapsed)[0])


def test_conditional_batch_norm_starts_plain_and_acts_per_class():
    from histosynth.gan.nets.dcgan import ConditionalBatchNorm2d

    torch.manual_seed(0)
    cbn, bn = ConditionalBatchNorm2d(3, num_classes=2), torch.nn.BatchNorm2d(3, affine=False)
    x, y = torch.randn(6, 3, 4, 4), torch.tensor([0, 1, 0, 1, 0, 1])
    assert torch.allclose(cbn(x, y), bn(x))  # gain 1 + 0, bias 0 at init: a plain batch norm
    with torch.no_grad():
        cbn.gain.weight[1] = 1.0  # class 1 doubles, class 0 untouched
        cbn.bias.weight[1] = 0.5
    out, ref = cbn(x, y), bn(x)
    assert torch.allclose(out[y == 0], ref[y == 0]) and torch.allclose(out[y == 1], 2 * ref[y == 1] + 0.5)
    out.sum().backward()
    assert cbn.gain.weight.grad.abs().sum() > 0


def test_cond_bn_generator_is_class_conditional_in_every_layer():
    torch.manual_seed(0)
    spec = {"arch": "dcgan", "image_size": 32, "latent_dim": 8, "g_features": 4, "num_classes": 3, "upsample": "resize", "cond_bn": True}
    G = build_generator(spec)
    init_dcgan_weights(G)
    norms = [m for m in G.modules() if m.__class__.__name__ == "ConditionalBatchNorm2d"]
    assert len(norms) == 3 and not any(isinstance(m, torch.nn.BatchNorm2d) and m.affine for m in G.modules())
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    G(z, y).square().mean().backward()
    assert all(m.gain.weight.grad[[0, 1, 2]].abs().sum(1).gt(0).all() for m in norms)  # every class's gain learns
    plain = build_generator({k: v for k, v in spec.items() if k != "cond_bn"})  # bundles without the key: plain BN
    assert not any(m.__class__.__name__ == "ConditionalBatchNorm2d" for m in plain.modules())
    with pytest.raises(ValueError, match="class-conditional"):
        build_generator({**spec, "num_classes": 0})


def test_skip_z_starts_as_cond_bn_and_lets_z_steer_every_layer():
    spec = {"arch": "dcgan", "image_size": 32, "latent_dim": 8, "g_features": 4, "num_classes": 3, "upsample": "resize", "cond_bn": True}
    torch.manual_seed(0)
    G = build_generator({**spec, "skip_z": True})
    init_dcgan_weights(G)
    plain = build_generator(spec)
    missing, unexpected = plain.load_state_dict(G.state_dict(), strict=False)
    assert not missing and unexpected and all("_z." in k for k in unexpected)
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    assert torch.allclose(G.eval()(z, y), plain.eval()(z, y))  # zero-initialised maps: the cond-BN generator
    G.train()(z, y).square().mean().backward()
    norms = [m for m in G.modules() if m.__class__.__name__ == "ConditionalBatchNorm2d"]
    assert len(norms) == 3 and all(m.gain_z.weight.grad.abs().sum() > 0 and m.bias_z.weight.grad.abs().sum() > 0 for m in norms)
    norm = norms[-1]  # the last layer's gain now depends on z: two latents, same features in, different out
    with torch.no_grad():
        torch.nn.init.normal_(norm.gain_z.weight, 0.0, 0.5)
    h, y2 = torch.randn(2, norm.bn.num_features, 4, 4), torch.tensor([1, 1])
    norm.eval()
    a, b = norm(h, y2, torch.randn(2, 8)), norm(h, y2, torch.randn(2, 8))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="cond_bn"):
        build_generator({**spec, "cond_bn": False, "skip_z": True})


@pytest.mark.parametrize("overrides", [["data.conditional=false"], ["model.arch=masan", "model.discriminator=own", "data.image_size=64"]])
def test_config_refuses_cond_bn_where_there_is_no_conditional_dcgan_generator(overrides):
    from histosynth.config import load_config
    from histosynth.errors import ConfigError

    with pytest.raises(ConfigError, match="g_cond_bn"):
        load_config("configs/dcgan-samples.yaml", overrides)
    with pytest.raises(ConfigError, match="g_skip_z"):
        load_config("configs/dcgan-samples.yaml", ["model.g_cond_bn=false", "model.g_skip_z=true"])
