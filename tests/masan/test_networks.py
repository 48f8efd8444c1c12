"""MASAN's networks: shapes at 64/128/256 px, class conditioning by AdaIN, the attention module, and the
reconstruction decoders' targets and L1."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from histosynth.gan.masan import EfficientMultiScaleAttention, MASANDiscriminator, MASANGenerator, recon_targets
from histosynth.gan.masan.discriminator import quadrant
from histosynth.gan.masan.objective import recon_loss
from histosynth.gan.nets import build_discriminator, build_generator

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("size", [64, 128, 256])
def test_generator_and_discriminator_shapes(size, tiny_spec):
    torch.manual_seed(0)
    spec = tiny_spec(size)
    G, D = build_generator(spec), build_discriminator(spec)
    assert isinstance(G, MASANGenerator) and isinstance(D, MASANDiscriminator)
    z, y = torch.randn(3, 16), torch.tensor([0, 1, 1])
    x = G(z, y)
    assert x.shape == (3, 3, size, size) and x.abs().max() <= 1.0
    h, f8, f16 = D.features(x)
    assert h.shape == (3, 2 * 8 * 16) and f8.shape == (3, 64, 8, 8) and f16.shape == (3, 32, 16, 16)  # 8x8 x 8*features
    assert D(x, y).shape == (3,)
    rec_full, rec_part = D.reconstruct(f8, f16, part=2)
    assert rec_full.shape == rec_part.shape == (3, 3, size // 2, size // 2)


def test_paper_scale_channels():
    """At 64 feature maps: G starts at 512 channels and halves in every block; D ends at 8x8x512."""
    G, D = MASANGenerator(256, 256, 64, 3, 4), MASANDiscriminator(256, 64, 3, 4)
    assert G.init[0].out_channels == 2 * 512  # GLU halves it
    assert [b[1].out_channels // 2 for b in G.blocks] == [256, 128, 64, 32, 16, 8]
    assert sorted(G.excite) == ["4", "5", "6"]  # 64, 128 and 256 px gated by 4, 8 and 16 px
    with torch.no_grad():
        assert D.features(torch.zeros(2, 3, 256, 256))[1].shape == (2, 512, 8, 8)


@pytest.mark.parametrize("size", [32, 512])
def test_unsupported_sizes_are_refused(size):
    with pytest.raises(ValueError, match="64, 128, 256"):
        MASANGenerator(size)
    with pytest.raises(ValueError, match="64, 128, 256"):
        MASANDiscriminator(size)


def test_adain_conditions_every_intermediate_block_by_class(tiny_spec):
    torch.manual_seed(0)
    G = build_generator(tiny_spec(64, num_classes=3)).eval()
    assert sorted(G.adain) == ["1", "2", "3"]  # 8, 16, 32 px; not the 4x4 input or the 64 px output
    z = torch.randn(1, 16).expand(3, -1)
    with torch.no_grad():
        x = G(z, torch.tensor([0, 1, 2]))
        again = G(z, torch.tensor([0, 1, 2]))
    assert torch.equal(x, again)
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert (x[a] - x[b]).abs().mean() > 1e-3  # same z, another class: another image
    with pytest.raises(ValueError, match="pass class ids"):
        G(z)


def test_adain_is_the_class_affine_of_instance_normalised_features(tiny_spec):
    torch.manual_seed(0)
    G = build_generator(tiny_spec(64, num_classes=2))
    adain = G.adain["2"]
    x, style = torch.randn(2, adain.norm.num_features, 16, 16), torch.randn(2, 128)
    gamma, beta = adain.affine(style).chunk(2, dim=1)
    mu, var = x.mean((2, 3), keepdim=True), x.var((2, 3), unbiased=False, keepdim=True)
    want = (1 + gamma[:, :, None, None]) * (x - mu) / torch.sqrt(var + 1e-5) + beta[:, :, None, None]
    torch.testing.assert_close(adain(x, style), want, rtol=1e-4, atol=1e-5)


def test_unconditional_models_take_no_class(tiny_spec):
    G, D = build_generator(tiny_spec(64, 0)), build_discriminator(tiny_spec(64, 0))
    assert not hasattr(G, "adain") and D.san.weight.shape[0] == 1
    assert D(G(torch.randn(2, 16))).shape == (2,)


def test_efficient_multiscale_attention_keeps_shape_and_samples_apart():
    """Groups are folded into the batch axis: each image's output must depend on that image only."""
    torch.manual_seed(0)
    ema = EfficientMultiScaleAttention(32, groups=8)
    x = torch.randn(4, 32, 16, 12)
    out = ema(x)
    assert out.shape == x.shape
    torch.testing.assert_close(ema(x[2:3]), out[2:3])
    with pytest.raises(ValueError, match="divisible"):
        EfficientMultiScaleAttention(12, groups=8)


@pytest.mark.parametrize("part", [0, 1, 2, 3])
def test_recon_targets_are_the_downsampled_image_and_its_quadrant(part):
    real = torch.randn(2, 3, 64, 64)
    full, crop = recon_targets(real, part)
    want_full = real.reshape(2, 3, 32, 2, 32, 2).mean((3, 5))  # 2x2 block means
    torch.testing.assert_close(full, want_full)
    r, c = divmod(part, 2)
    assert torch.equal(crop, real[:, :, 32 * r : 32 * r + 32, 32 * c : 32 * c + 32])


@pytest.mark.parametrize("part", [0, 3])
def test_recon_decoders_read_the_matching_feature_quadrant_and_l1(part, tiny_spec):
    torch.manual_seed(0)
    D = build_discriminator(tiny_spec(64))
    real = torch.rand(2, 3, 64, 64) * 2 - 1
    _, f8, f16 = D.features(real)
    seen = {}
    D.decode_16.register_forward_pre_hook(lambda m, inp: seen.update(inp=inp[0]))
    rec_full, rec_part = D.reconstruct(f8, f16, part)
    r, c = divmod(part, 2)
    assert torch.equal(seen["inp"], f16[:, :, 8 * r : 8 * r + 8, 8 * c : 8 * c + 8])
    assert torch.equal(quadrant(f16, part), seen["inp"])
    t_full, t_part = recon_targets(real, part)
    want = (rec_full - t_full).abs().mean() + (rec_part - t_part).abs().mean()
    torch.testing.assert_close(recon_loss(D, f8, f16, real, part), want)
    assert torch.equal(F.avg_pool2d(real, 2), t_full)

