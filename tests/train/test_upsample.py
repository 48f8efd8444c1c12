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
