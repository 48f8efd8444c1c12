"""Client pieces that need no server: latents, class lookup, PNG + manifest writing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from histosynth.errors import HistosynthError
from histosynth.serving.client import ModelInfo, SynthResult, latents, write_pngs

pytestmark = pytest.mark.unit


def test_latents_depend_only_on_seed_and_index():
    whole = latents(7, range(10), 100)
    assert whole.shape == (10, 100) and whole.dtype == np.float32
    assert np.array_equal(latents(7, [3, 9], 100), whole[[3, 9]])
    assert np.array_equal(latents(7, range(5, 10), 100), whole[5:])
    assert not np.array_equal(latents(8, range(10), 100), whole)
    assert abs(float(whole.std()) - 1.0) < 0.2
    with pytest.raises(HistosynthError):
        latents(-1, [0], 4)


def test_class_lookup():
    info = ModelInfo("m", 64, 100, 64, 3, ["benign", "invasive"], ["z", "class_id"], ["images_uint8", "images"])
    assert info.conditional and info.class_id("invasive") == 1
    with pytest.raises(HistosynthError, match="unknown class 'normal'") as e:
        info.class_id("normal")
    assert e.value.hint == "use one of: benign, invasive"
    plain = ModelInfo("g", 64, 100, 64, 3, [], ["z"], ["images_uint8"])
    with pytest.raises(HistosynthError, match="unconditional"):
        plain.class_id("benign")


def test_unconditional_model_trained_on_several_classes_takes_no_class():
    info = ModelInfo("g", 64, 100, 64, 3, ["blood_smear", "he_skin"], ["z"], ["images_uint8", "images"])
    assert not info.conditional
    with pytest.raises(HistosynthError, match="unconditional"):
        info.class_id("he_skin")


def test_write_pngs(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    result = SynthResult(images, np.array([1, 0, 1]), "m", "2")
    path = write_pngs(result, tmp_path, {"seed": 5, "classes": ["benign", "invasive"]})
    manifest = json.loads(path.read_text())
    assert manifest["model"] == "m" and manifest["model_version"] == "2" and manifest["n"] == 3 and manifest["seed"] == 5
    assert manifest["images"][0] == {"file": "000000.png", "index": 0, "class_id": 1, "class": "invasive"}
    with Image.open(tmp_path / "000002.png") as im:
        assert np.array_equal(np.asarray(im), images[2])
