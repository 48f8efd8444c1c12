"""RL-EO on CUDA: the side-stream, half-precision reward agrees with a plain fp32 evaluation, and the step's
updates still equal the plain GAN's. Skipped without a GPU (CI); run on a GPU machine."""

from __future__ import annotations

import copy

import pytest
import torch

from histosynth.device import amp_for, determinism
from histosynth.gan.losses import get_loss
from histosynth.gan.nets import DCGANDiscriminator, DCGANGenerator, init_dcgan_weights
from histosynth.gan.rl_eo import RLEOReward, vgg16_standin
from histosynth.gan.train import GANStep

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
DEV = torch.device("cuda")


@pytest.mark.numerics
@pytest.mark.parametrize("half", [True, False])
@pytest.mark.parametrize("overlap", [True, False])
def test_cuda_reward_matches_fp32_reference(half, overlap):
    """Calls 1-2 eager, 3+ a replayed CUDA graph (with overlap): every call agrees with the fp32 reference."""
    sim = vgg16_standin(DEV)
    g = torch.Generator(device=DEV).manual_seed(0)
    x = torch.rand(64, 3, 64, 64, device=DEV, generator=g) * 2 - 1
    f = (torch.rand(64, 3, 64, 64, device=DEV, generator=g) * 2 - 1).bfloat16()  # as out of G's bf16 autocast
    y = torch.arange(64, device=DEV) % 2
    r = RLEOReward(sim, 0.3, classes=["a", "b"], device=DEV, half=half, overlap=overlap)
    assert (r.stream is not None) is overlap and r.half is half
    tol = 1e-2 if half else 1e-5
    for call in range(4):
        xs, fs = (x, f) if call % 2 == 0 else (f.float(), x.bfloat16())  # new inputs must reach the graph
        with torch.no_grad():
            ref = sim(xs, fs.float())
        with torch.autocast("cuda", dtype=torch.bfloat16):  # the caller's autocast must not leak into fp32 mode
            out = r(xs, fs, y)
        assert out.reward.item() == pytest.approx(0.3 * ref.mean().item(), rel=tol)
        got = r.window_rewards()
        assert got["rl_eo/reward/a"] == pytest.approx(0.3 * ref[y == 0].mean().item(), rel=tol)
        assert got["rl_eo/reward/b"] == pytest.approx(0.3 * ref[y == 1].mean().item(), rel=tol)
    assert len(r._graphs) == (1 if overlap else 0) and not r._graph_failed


@pytest.mark.numerics
def test_cuda_step_with_side_stream_reward_updates_like_plain_gan():
    torch.manual_seed(0)
    G = DCGANGenerator(image_size=64, latent_dim=100, features=16).to(DEV)
    D = DCGANDiscriminator(image_size=64, features=16).to(DEV)
    init_dcgan_weights(G), init_dcgan_weights(D)
    G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
    amp = amp_for(DEV)

    def step(G, D, reward=None):
        opt_g, opt_d = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999)), torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
        return GANStep(G, D, opt_g, opt_d, get_loss("bce", real_label=0.9), latent_dim=100, amp=amp, grad_clip=0.1, reward=reward)

    a = step(G, D, RLEOReward(vgg16_standin(DEV), 0.3, device=DEV))
    b = step(G2, D2)
    with determinism(DEV, True):
        for s in range(3):
            x = torch.rand(32, 3, 64, 64, device=DEV, generator=torch.Generator(device=DEV).manual_seed(s)) * 2 - 1
            y = torch.zeros(32, dtype=torch.long, device=DEV)
            torch.manual_seed(s)
            m1 = a([(x, y)])
            torch.manual_seed(s)
            m2 = b([(x, y)])
            assert m1["loss_d"].item() == pytest.approx(m2["loss_d"].item() - m1["rl_eo/reward"].item(), rel=1e-5, abs=1e-6)
            assert 0 < m1["rl_eo/reward"].item() <= 0.3
    for p, q in zip([*G.parameters(), *D.parameters()], [*G2.parameters(), *D2.parameters()]):
        assert torch.allclose(p, q, rtol=0, atol=1e-6)
