"""DiffAugment policies against their published definitions, computed per image with numpy loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from histosynth.gan.diffaugment import POLICIES, DiffAugment, parse_policy
from histosynth.errors import ConfigError

pytestmark = pytest.mark.unit


def batch(seed: int = 0, b: int = 6, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g) * 2 - 1


def params(name: str, x: torch.Tensor, seed: int = 1) -> dict[str, torch.Tensor]:
    return POLICIES[name].sample(x, torch.Generator().manual_seed(seed))


def test_color_matches_definition():
    x = batch()
    p = params("color", x)
    out = POLICIES["color"].apply(x, p).numpy()
    for i, img in enumerate(x.numpy().astype(np.float64)):
        bright, sat, con = (float(p[k][i]) for k in ("brightness", "saturation", "contrast"))
        ref = img + (bright - 0.5)
        gray = ref.mean(axis=0, keepdims=True)
        ref = (ref - gray) * (2 * sat) + gray
        ref = (ref - ref.mean()) * (con + 0.5) + ref.mean()
        np.testing.assert_allclose(out[i], ref, atol=1e-5)


def test_translation_matches_definition():
    x = batch(size=16)
    p = params("translation", x)
    assert p["dx"].abs().max() <= 2 and p["dy"].abs().max() <= 2  # round(16 / 8) = 2
    out = POLICIES["translation"].apply(x, p).numpy()
    for i, img in enumerate(x.numpy()):
        dy, dx = int(p["dy"][i]), int(p["dx"][i])
        ref = np.zeros_like(img)
        for r in range(16):
            for c in range(16):
                if 0 <= r + dy < 16 and 0 <= c + dx < 16:
                    ref[:, r, c] = img[:, r + dy, c + dx]
        np.testing.assert_array_equal(out[i], ref)


def test_translation_covers_every_shift():
    x = batch(b=4000, size=16)
    p = params("translation", x)
    assert sorted(set(p["dy"].tolist())) == [-2, -1, 0, 1, 2]


def test_cutout_matches_definition():
    x = batch(size=16)
    p = params("cutout", x)
    out = POLICIES["cutout"].apply(x, p).numpy()
    side = 8  # round(16 * 0.5)
    for i, img in enumerate(x.numpy()):
        y0, x0 = int(p["y0"][i]), int(p["x0"][i])
        assert -side // 2 <= y0 <= 16 - side // 2 and -side // 2 <= x0 <= 16 - side // 2
        ref = img.copy()
        ref[:, max(0, y0) : max(0, y0 + side), max(0, x0) : max(0, x0 + side)] = 0
        np.testing.assert_array_equal(out[i], ref)


@pytest.mark.parametrize("name", list(POLICIES))
def test_each_policy_shape_dtype_and_differentiable(name):
    x = batch().requires_grad_(True)
    out = DiffAugment(name)(x)
    assert out.shape == x.shape and out.dtype == x.dtype and out.is_contiguous()
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list(POLICIES))
def test_each_image_gets_its_own_draw(name):
    x = batch(b=1).repeat(32, 1, 1, 1)  # the same image 32 times
    out = DiffAugment(name)(x)
    distinct = {tuple(o.flatten()[::7].tolist()) for o in out}
    assert len(distinct) > 1, "every image in a batch draws its own transform"


def test_geometric_policies_only_move_or_zero_pixels():
    x = batch()
    for name in ("translation", "cutout"):
        out = DiffAugment(name)(x)
        values = set(x.flatten().tolist()) | {0.0}
        assert set(out.flatten().tolist()) <= values


def test_policy_parsing_and_identity():
    assert parse_policy("color, translation") == ["color", "translation"]
    assert parse_policy("none") == [] and parse_policy("") == []
    x = batch()
    assert not DiffAugment("none") and torch.equal(DiffAugment("none")(x), x)
    with pytest.raises(ConfigError, match="unknown augment.policy"):
        parse_policy("color,flip")


def test_probability_p_applies_each_op_to_about_p_of_the_images():
    x = batch(b=2000, size=8)
    out = DiffAugment("cutout", torch.Generator().manual_seed(3), p=0.3)(x)
    changed = (out != x).flatten(1).any(1).float().mean().item()
    assert 0.25 < changed < 0.35, changed
    assert torch.equal(DiffAugment("cutout", torch.Generator().manual_seed(3), p=1.0)(x), DiffAugment("cutout", torch.Generator().manual_seed(3))(x))
    y = x[:4].clone().requires_grad_(True)
    DiffAugment("color,translation", p=0.5)(y).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()
    from histosynth.config import load_config

    for bad in ("0", "1.5"):
        with pytest.raises(ConfigError, match="augment.p"):
            load_config(None, [f"augment.p={bad}"])


def test_seeded_generator_repeats_exactly():
    x = batch()
    a = DiffAugment("color,translation,cutout", torch.Generator().manual_seed(3))(x)
    b = DiffAugment("color,translation,cutout", torch.Generator().manual_seed(3))(x)
    assert torch.equal(a, b)


class Recorder:
    """DiffAugment that also records what it was given (requires_grad says which update the batch is in)."""

    def __init__(self):
        self.aug = DiffAugment("color,translation,cutout")
        self.seen: list[tuple[tuple[int, ...], bool]] = []

    def __call__(self, x):
        self.seen.append((tuple(x.shape), x.requires_grad))
        return self.aug(x)


def test_gan_step_augments_everything_d_sees_and_g_learns_through_it():
    from histosynth.device import amp_for
    from histosynth.gan.losses import get_loss
    from histosynth.gan.nets import build_discriminator, build_generator
    from histosynth.gan.train.step import GANStep

    torch.manual_seed(0)
    G = build_generator({"arch": "dcgan", "image_size": 32, "latent_dim": 8, "g_features": 4})
    D = build_discriminator({"arch": "dcgan", "image_size": 32, "d_features": 4, "spectral_norm": True})
    rec = Recorder()
    opt_g, opt_d = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    step = GANStep(G, D, opt_g, opt_d, get_loss("hinge"), latent_dim=8, amp=amp_for(torch.device("cpu"), False), augment=rec)
    before = [p.detach().clone() for p in G.parameters()]
    m = step([(torch.rand(4, 3, 32, 32) * 2 - 1, torch.zeros(4, dtype=torch.long))])
    # D update: real (no grad) and detached fake (no grad); G update: fake with its graph
    assert rec.seen == [((4, 3, 32, 32), False), ((4, 3, 32, 32), False), ((4, 3, 32, 32), True)]
    assert m["grad_norm_g"] > 0 and any(not torch.equal(a, b) for a, b in zip(before, G.parameters()))
