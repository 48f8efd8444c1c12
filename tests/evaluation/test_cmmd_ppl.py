"""CMMD against a brute-force numpy reference; PPL against hand-computed cases; the CLIP tower's loader."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from histosynth.errors import HistosynthError
from histosynth.evaluation.metrics import cmmd, compute, ppl

pytestmark = pytest.mark.numerics


def ref_mmd(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Biased MMD^2 with an RBF kernel, one pair at a time (the textbook definition, diagonals included)."""

    def k(a, b):
        return math.exp(-float(((a - b) ** 2).sum()) / (2 * sigma**2))

    kxx = sum(k(a, b) for a in x for b in x) / len(x) ** 2
    kyy = sum(k(a, b) for a in y for b in y) / len(y) ** 2
    kxy = sum(k(a, b) for a in x for b in y) / (len(x) * len(y))
    return kxx + kyy - 2 * kxy


@pytest.mark.parametrize("sigma,block", [(10.0, 1 << 24), (0.7, 37)])
def test_cmmd_matches_bruteforce(sigma, block):
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((30, 16)), rng.standard_normal((23, 16)) * 1.3 + 0.4
    got = cmmd.compute(real, fake, cmmd_sigma=sigma, cmmd_scale=1000.0, cmmd_normalize=False, device="cpu", block_elems=block)
    assert got["cmmd"] == pytest.approx(1000.0 * ref_mmd(real, fake, sigma), rel=1e-10, abs=1e-12)
    # normalised (the reference's CLIP handling): the same as the brute force on unit rows
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    got_n = cmmd.compute(real, fake, cmmd_sigma=sigma, device="cpu", block_elems=block)
    assert got_n["cmmd"] == pytest.approx(1000.0 * ref_mmd(unit(real), unit(fake), sigma), rel=1e-10, abs=1e-12)


def test_cmmd_properties_and_registry():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 8))
    assert cmmd.compute(x, x.copy(), device="cpu")["cmmd"] == pytest.approx(0.0, abs=1e-12)
    near, far = cmmd.compute(x, x + 0.05, device="cpu")["cmmd"], cmmd.compute(x, x + 2.0, device="cpu")["cmmd"]
    assert 0 < near < far
    values, details = compute("cmmd", x, x + 2.0, device="cpu")
    assert set(values) == {"cmmd"} and details["cmmd_kernel"]["sigma"] == 10.0  # only the value is a metric
    assert "NOT CLIP-CMMD" in cmmd.label("inception-fid") and cmmd.label("clip-vit-l14-336").startswith("CLIP-CMMD")
    with pytest.raises(HistosynthError, match="at least 2"):
        cmmd.compute(x[:1], x, device="cpu")


def linear_handle(a: torch.Tensor) -> ppl.GeneratorHandle:
    """G(z) = A z viewed as a 3x2x2 image: path lengths are known in closed form."""
    return ppl.GeneratorHandle(fn=lambda z, y: (z @ a.T).view(-1, 3, 2, 2), latent_dim=a.shape[1], device=torch.device("cpu"))


def test_ppl_hand_computed_orthonormal_pair():
    e0, e1 = torch.eye(12)[:1], torch.eye(12)[1:2]
    g = linear_handle(torch.eye(12))
    for t in (0.0, 0.3, 0.9):
        lerp = ppl.path_lengths(g, ppl.pixel_distance, 1, interp="lerp", pairs=(e0, e1, torch.tensor([t])))
        slerp = ppl.path_lengths(g, ppl.pixel_distance, 1, interp="slerp", pairs=(e0, e1, torch.tensor([t])))
        # lerp: |e1 - e0|^2 / (H*W) = 2/4; slerp along the quarter circle: speed pi/2, so (pi/2)^2 / 4
        assert lerp[0] == pytest.approx(0.5, rel=1e-3)
        assert slerp[0] == pytest.approx((math.pi / 2) ** 2 / 4, rel=1e-3)


def test_ppl_linear_generator_random_pairs_and_filter():
    torch.manual_seed(0)
    a = torch.randn(12, 6)
    g = linear_handle(a)
    n, seed = 200, 3
    got = ppl.compute(generator=g, ppl_samples=n, ppl_interp="lerp", ppl_distance="pixel", seed=seed)
    # the same draws by hand: per pair |A (z1 - z0)|^2 / 4, independent of t and eps for a linear G
    gen = torch.Generator().manual_seed(seed)
    z0, z1 = torch.randn(n, 6, generator=gen), torch.randn(n, 6, generator=gen)
    per = (((z1 - z0).double() @ a.double().T) ** 2).sum(1).numpy() / 4
    lo, hi = np.percentile(per, 1, method="lower"), np.percentile(per, 99, method="higher")
    assert got["ppl"] == pytest.approx(per[(per >= lo) & (per <= hi)].mean(), rel=2e-3)
    assert got["ppl_setup"]["epsilon"] == 1e-4 and got["ppl_setup"]["distance"]["name"] == "pixel"
    assert ppl.filtered_mean(np.r_[np.ones(998), 1e9, -1e9]) == 1.0  # the two outliers are dropped (>= 1000 values)


def test_ppl_vgg_distance_and_errors(monkeypatch):
    dist, desc = ppl.get_distance("untrained-vgg16", torch.device("cpu"))
    assert "not comparable" in desc["note"]
    x = torch.rand(2, 3, 16, 16) * 2 - 1  # below 32 px: upsampled first
    y = x.clone()
    y[:, :, 4:8, 4:8] += 0.5
    d = dist(x, y)
    assert d.shape == (2,) and (d > 0).all() and torch.allclose(dist(x, x), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(d, dist(y, x), rtol=1e-6)
    with pytest.raises(HistosynthError, match="needs the generator"):
        ppl.compute(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(HistosynthError, match="unknown PPL distance"):
        ppl.get_distance("lpips", torch.device("cpu"))
    monkeypatch.setenv("HISTOSYNTH_OFFLINE", "1")
    monkeypatch.delenv("HISTOSYNTH_VGG16", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: "/nonexistent-hub")
    with pytest.raises(HistosynthError, match="not available offline"):
        ppl.get_distance("vgg16", torch.device("cpu"))


def test_clip_tower_loads_from_checkpoint_keys_and_refuses_offline(tmp_path, monkeypatch):
    from histosynth.evaluation.features import clip

    torch.manual_seed(0)
    net = clip.ClipVisual(width=64, layers=2, patch=8, grid=4, out_dim=32)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    sd = {f"visual.{k}": v.half() for k, v in net.state_dict().items()} | {"token_embedding.weight": torch.zeros(3, 3)}
    torch.save(sd, tmp_path / "tiny.pt")
    back = clip.ClipVisual.from_state_dict(clip.load_state_dict(tmp_path / "tiny.pt"))
    assert back.resolution == 32 and len(back.transformer.resblocks) == 2
    ext = clip.make_extractor("clip-test", back, torch.device("cpu"), "tiny", "x")
    feats = ext(np.random.default_rng(0).integers(0, 255, (3, 20, 20, 3), dtype=np.uint8))  # resized to 32 inside
    assert feats.shape == (3, 32) and np.isfinite(feats).all()
    monkeypatch.setenv("HISTOSYNTH_OFFLINE", "1")
    monkeypatch.delenv(clip.ENV_CLIP, raising=False)
    with pytest.raises(HistosynthError, match="not available offline") as e:
        clip.clip_weights("clip-vit-l14-336")
    assert clip.MODELS["clip-vit-l14-336"].sha256 in e.value.hint
    with pytest.raises(HistosynthError, match="sha256 mismatch"):
        clip.clip_weights("clip-vit-l14-336", tmp_path / "tiny.pt")
