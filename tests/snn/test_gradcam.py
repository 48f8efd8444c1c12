"""Grad-CAM on the encoder: maps in [0, 1], PNG overlays of the requested size, logged by the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from histosynth.data.store import PatchStore
from histosynth.snn import load_similarity
from histosynth.snn.gradcam import gradcam, save_gradcam

pytestmark = pytest.mark.integration


def test_gradcam_maps_and_files(stage1_bundle, splits_root, tmp_path):
    sim = load_similarity(stage1_bundle.bundle, "cpu")
    images = np.asarray(PatchStore(splits_root / "test").images[:3])
    cams = gradcam(sim.model, torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1)
    assert cams.shape == (3, 32, 32) and cams.min() >= 0 and cams.max() <= 1
    assert all(not p.requires_grad for p in sim.model.parameters())  # explaining does not unfreeze
    files = save_gradcam(sim.model, images, tmp_path / "a")
    assert [f.name for f in files] == ["gradcam-00.png", "gradcam-01.png", "gradcam-02.png", "gradcam-grid.png"]
    assert all(Image.open(f).size == (32, 32) for f in files[:-1])
    assert Image.open(files[-1]).size == (3 * 32, 2 * 32)
    big = save_gradcam(sim.model, images[:2], tmp_path / "b", size=48)
    assert Image.open(big[0]).size == (48, 48) and Image.open(big[-1]).size == (96, 96)
    assert np.asarray(Image.open(files[0])).std() > 0
