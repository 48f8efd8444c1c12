"""The sample grid writer against the reference it replaces: torchvision's save_image (same layout, same pixels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from histosynth.gan.train.plots import save_grid


@pytest.mark.numerics
@pytest.mark.parametrize("n, nrow", [(16, 4), (10, 4), (3, 8), (1, 1)])
def test_grid_equals_torchvision_save_image(tmp_path, n, nrow):
    save_image = pytest.importorskip("torchvision.utils").save_image
    imgs = torch.randn(n, 3, 12, 10, generator=torch.Generator().manual_seed(n)) * 0.8  # some values beyond [-1, 1]
    ours, ref = tmp_path / "ours.png", tmp_path / "ref.png"
    save_grid(imgs, ours, nrow)
    save_image(imgs, ref, nrow=nrow, normalize=True, value_range=(-1.0, 1.0), padding=2)
    a, b = np.asarray(Image.open(ours)), np.asarray(Image.open(ref))
    assert a.shape == b.shape and np.array_equal(a, b)
