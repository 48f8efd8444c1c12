"""The SAN last layer and MASAN's D objective: unit class directions, and the gradient routing of the two terms
(the direction learns only from the Wasserstein term, the features only from the GAN (hinge) term)."""

from __future__ import annotations

import pytest
import torch

from histosynth.device import amp_for
from histosynth.gan.losses import loss_from_config
from histosynth.config import LossConfig
from histosynth.gan.masan import MASANObjective, SANLinear
from histosynth.gan.masan.san import wasserstein_direction_loss
from histosynth.gan.nets import build_d_objective, build_discriminator, build_generator
from histosynth.gan.train.step import GANStep

HINGE = loss_from_config(LossConfig(name="hinge"))


def _feature_params(D):
    return [p for n, p in D.named_parameters() if not n.startswith(("san.", "decode_"))]


@pytest.mark.unit
def test_directions_are_unit_and_per_class():
    torch.manual_seed(0)
    san = SANLinear(6, num_classes=3)
    y = torch.tensor([2, 0, 2])
    w = san.direction(y, 3)
    torch.testing.assert_close(w.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(w[0], san.weight[2] / san.weight[2].norm())
    h = torch.randn(3, 6)
    fun, dir_ = san.split(h, y)
    torch.testing.assert_close(fun, (h * w).sum(1))
    torch.testing.assert_close(dir_, san(h, y))
    with pytest.raises(ValueError, match="pass class ids"):
        san(h)


@pytest.mark.unit
def test_hinge_term_trains_features_only_and_wasserstein_term_direction_only():
    torch.manual_seed(0)
    san = SANLinear(5, num_classes=2)
    h_real = torch.randn(4, 5, requires_grad=True)
    h_fake = torch.randn(4, 5, requires_grad=True)
    y = torch.tensor([0, 1, 0, 1])
    (fr, dr), (ff, df) = san.split(h_real, y), san.split(h_fake, y)

    (HINGE.d_real(fr) + HINGE.d_fake(ff)).backward(retain_graph=True)
    assert san.weight.grad is None
    assert h_real.grad.abs().sum() > 0 and h_fake.grad.abs().sum() > 0

    h_real.grad = h_fake.grad = None
    wasserstein_direction_loss(dr, df).backward()
    assert h_real.grad is None and h_fake.grad is None
    assert san.weight.grad.abs().sum() > 0


@pytest.mark.numerics
def test_direction_gradient_is_the_projected_mean_feature_gap():
    """d/dv (E_fake<w, h> - E_real<w, h>) with w = v / |v| is (I - w w^T) (mean h_fake - mean h_real) / |v|."""
    torch.manual_seed(1)
    san = SANLinear(7).double()
    h_real, h_fake = torch.randn(16, 7, dtype=torch.float64) + 0.5, torch.randn(16, 7, dtype=torch.float64)
    wasserstein_direction_loss(san.split(h_real)[1], san.split(h_fake)[1]).backward()
    v = san.weight.detach()[0]
    w = v / v.norm()
    gap = h_fake.mean(0) - h_real.mean(0)
    want = (gap - w * (w @ gap)) / v.norm()
    torch.testing.assert_close(san.weight.grad[0], want)


@pytest.mark.unit
def test_objective_routes_gradients_through_the_discriminator(tiny_spec):
    """On the whole D: the GAN terms reach h's layers but not the direction; the Wasserstein term reaches only the
    direction; the reconstruction term reaches the trunk below the head and the decoders, not the direction."""
    torch.manual_seed(0)
    D = build_discriminator(tiny_spec(64)).eval()  # fixed BN statistics and spectral norms: repeatable outputs
    real, fake, y = torch.rand(4, 3, 64, 64) * 2 - 1, torch.rand(4, 3, 64, 64) * 2 - 1, torch.tensor([0, 1, 1, 0])
    feats = _feature_params(D)

    t = MASANObjective(HINGE, recon_weight=0.0)(D, real, fake, y)
    torch.testing.assert_close(t.loss_real, torch.relu(1 - D(real, y)).mean())
    torch.testing.assert_close(t.loss_fake, torch.relu(1 + D(fake, y)).mean())
    (t.loss_real + t.loss_fake).backward(retain_graph=True)
    assert D.san.weight.grad is None and all(p.grad is not None for p in feats)
    D.zero_grad(set_to_none=True)
    t.extra.backward()
    assert D.san.weight.grad.abs().sum() > 0 and all(p.grad is None for p in feats)
    dir_grad = D.san.weight.grad.clone()

    D.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    t = MASANObjective(HINGE, recon_weight=2.0)(D, real, fake, y)
    assert set(t.metrics) == {"san/loss_dir", "masan/recon_l1"}
    torch.testing.assert_close(t.extra, t.metrics["san/loss_dir"] + 2.0 * t.metrics["masan/recon_l1"])
    t.extra.backward()
    torch.testing.assert_close(D.san.weight.grad, dir_grad)  # the reconstruction adds nothing to the direction
    trunk_and_decoders = [p for n, p in D.named_parameters() if n.startswith(("stem.", "downs.", "decode_"))]
    assert all(p.grad is not None for p in trunk_and_decoders) and all(p.grad is None for p in D.head.parameters())


@pytest.mark.unit
def test_gan_step_trains_masan_through_the_hook(tiny_spec):
    """GANStep with the d_objective hook: D minimises GAN + direction + reconstruction terms and logs them; G's
    update uses the plain output and moves G."""
    torch.manual_seed(0)
    spec = tiny_spec(64)
    G, D = build_generator(spec), build_discriminator(spec)
    opt_g, opt_d = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999)), torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    assert build_d_objective("dcgan", HINGE) is None
    step = GANStep(G, D, opt_g, opt_d, HINGE, latent_dim=16, conditional=True, amp=amp_for(torch.device("cpu"), False, False), d_objective=build_d_objective("masan", HINGE, 1.0))
    w0, g0 = D.san.weight.detach().clone(), G.to_rgb[0].weight.detach().clone()
    m = step([(torch.rand(4, 3, 64, 64) * 2 - 1, torch.tensor([0, 1, 0, 1]))])
    assert {"loss_d", "loss_d_real", "loss_d_fake", "loss_g", "san/loss_dir", "masan/recon_l1"} <= set(m)
    extra = m["san/loss_dir"] + m["masan/recon_l1"]
    torch.testing.assert_close(m["loss_d"], m["loss_d_real"] + m["loss_d_fake"] + extra)
    assert all(torch.isfinite(v).all() for v in m.values())
    assert not torch.equal(D.san.weight, w0) and not torch.equal(G.to_rgb[0].weight, g0)
