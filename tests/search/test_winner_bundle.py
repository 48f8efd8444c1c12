"""A GA-GAN winner is an ordinary generator bundle: the spec rebuilds the network (conditional BN, GLU,
self-attention) and the ONNX export matches PyTorch for every class."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from ga_gan_bundle import CLASSES, SPEC, make_ga_gan_bundle

from histosynth.errors import ConfigError
from histosynth.export.onnx import export_onnx
from histosynth.gan.bundle import load_generator
from histosynth.gan.nets import build_generator
from histosynth.gan.nets.ga_gan import Generator

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_ga_gan_bundle(tmp_path_factory.mktemp("ga-gan-bundle"))


def test_the_spec_rebuilds_the_generator(bundle):
    G, meta = load_generator(bundle)
    assert isinstance(G, Generator) and meta["spec"] == SPEC and meta["classes"] == CLASSES
    assert G.spec() == SPEC and str(G.genotype) == SPEC["genotype"] and sorted(G.attention) == ["1", "3"]
    assert G(torch.randn(2, 8), torch.tensor([0, 2])).shape == (2, 3, 32, 32)


def test_a_discriminator_only_op_is_refused():
    with pytest.raises(ConfigError, match="discriminator-only"):
        build_generator({**SPEC, "genotype": "{3, 16-7, []}"})


def test_onnx_export_matches_torch_for_every_class(bundle, tmp_path):
    report = export_onnx(bundle, tmp_path / "onnx", batch_for_check=4)
    assert report["max_abs_diff"] < 1e-4 and report["inputs"] == {"z": ["B", 8], "class_id": ["B"]}
    assert report["outputs"]["images"] == ["B", 3, 32, 32] and report["spec"]["arch"] == "ga-gan"
    G, _ = load_generator(bundle)
    sess = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    z = np.tile(np.random.default_rng(0).standard_normal((5, 8), dtype=np.float32), (len(CLASSES), 1))  # the same 5 latents per class
    c = np.repeat(np.arange(len(CLASSES), dtype=np.int64), 5)
    got, got_u8 = sess.run(["images", "images_uint8"], {"z": z, "class_id": c})
    with torch.no_grad():
        want = G(torch.from_numpy(z), torch.from_numpy(c)).numpy()
    assert got.shape == (15, 3, 32, 32) and got_u8.shape == (15, 32, 32, 3)
    np.testing.assert_allclose(got, want, atol=1e-4)
    by_class = got.reshape(len(CLASSES), 5, 3, 32, 32)
    assert all(np.abs(by_class[k] - by_class[k + 1]).mean() > 1e-4 for k in range(len(CLASSES) - 1))  # the class changes the image
