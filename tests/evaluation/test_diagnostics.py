"""t-SNE and nearest-neighbour diagnostics: PNGs of the stated size, exact-duplicate detection."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from histosynth.evaluation.diagnostics import grid_size, memorization_check, nearest, tsne_plot

from .conftest import colour_patches

pytestmark = pytest.mark.unit


def test_tsne_png_has_the_requested_size(tmp_path):
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((40, 64)), rng.standard_normal((30, 64)) + 3.0
    info = tsne_plot(real, fake, tmp_path / "t.png", size_px=(640, 480), real_labels=np.r_[np.zeros(20), np.ones(20)].astype(int), classes=["a", "b"])
    with Image.open(tmp_path / "t.png") as im:
        assert im.size == (640, 480) and im.format == "PNG"
    assert info["pca_dims"] == 50 and info["n_real"] == 40 and info["perplexity"] == pytest.approx(23.0)
    # separated sets stay separated: every point's 2-d nearest neighbour is from its own set
    from histosynth.evaluation.diagnostics import tsne_embed

    emb, _ = tsne_embed(real, fake)
    idx = nearest(emb, emb, 1, exclude_self=True, device="cpu")[0][:, 0]
    assert ((idx < 40) == (np.arange(70) < 40)).all()


def test_knn_grid_finds_an_exact_copy(tmp_path):
    imgs, _, _ = colour_patches({"a": 10, "b": 10}, size=16)
    real_feats = imgs.reshape(len(imgs), -1).astype(np.float64) / 255.0
    rng = np.random.default_rng(1)
    fake_imgs = rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    fake_imgs[4] = imgs[7]  # a "synthetic" sample that is a real patch
    fake_feats = fake_imgs.reshape(6, -1).astype(np.float64) / 255.0
    out = memorization_check(fake_feats, fake_imgs, real_feats, imgs, tmp_path / "knn.png", k=3, rows=4, cell=32, device="cpu")
    with Image.open(tmp_path / "knn.png") as im:
        assert im.size == grid_size(4, 3, 32)
        grid = np.asarray(im.convert("RGB"))
    first = out["shown"][0]
    assert first["synthetic"] == 4 and first["real"][0] == 7 and first["distance"][0] == 0.0  # the copy leads
    assert out["top1_min"] == 0.0 and out["share_closer_than_real_p5"] == pytest.approx(1 / 6)
    assert all(np.diff(r["distance"]).min() >= 0 for r in out["shown"])  # neighbours sorted by distance
    # the first row shows the query and its top neighbour, pixel for pixel (nearest-neighbour upscaling)
    from histosynth.evaluation.diagnostics.knn import GAP, PAD

    q = grid[PAD : PAD + 32 : 2, PAD : PAD + 32 : 2]
    x0 = PAD + 32 + PAD + GAP
    n1 = grid[PAD : PAD + 32 : 2, x0 : x0 + 32 : 2]
    assert np.array_equal(q, imgs[7]) and np.array_equal(n1, imgs[7])
    idx, dist = nearest(real_feats, real_feats, 2, device="cpu")
    assert (idx[:, 0] == np.arange(20)).all() and (dist[:, 0] == 0).all()  # a real image queried: distance 0


def test_real_vs_synthetic_grid_puts_each_set_on_its_side(tmp_path):
    from histosynth.evaluation.diagnostics import real_vs_synthetic
    from histosynth.evaluation.diagnostics.compare import GAP, TITLE, panel_size
    from histosynth.evaluation.diagnostics.knn import PAD

    real = np.zeros((5, 16, 16, 3), np.uint8)
    real[..., 0] = 255  # all red
    synthetic = np.zeros((5, 16, 16, 1), np.uint8)  # one-channel, all black
    path = real_vs_synthetic(real, synthetic, tmp_path / "out" / "grid.png", labels=("real test", "synthetic Triton"), cell=20)
    cols, pw, ph = panel_size(5, 20)
    assert cols == 3 and path.is_file()
    with Image.open(path) as im:
        px = np.asarray(im.convert("RGB"))
    assert px.shape == (ph + 2 * PAD, 2 * pw + GAP + 2 * PAD, 3)
    y = PAD + TITLE + 5  # inside the first row of cells
    assert (px[y, PAD + 5] == [255, 0, 0]).all() and (px[y, PAD + pw + GAP + 5] == [0, 0, 0]).all()
    assert (px[PAD + TITLE + 20 + PAD + 5, PAD + 2 * (20 + PAD) + 5] == [255, 255, 255]).all()  # 5 of 6 cells: the last is empty
    assert (px[2:PAD + TITLE - 2, PAD : PAD + pw] < 128).any()  # the label is drawn
    with pytest.raises(ValueError, match="as many real as synthetic"):
        real_vs_synthetic(real, synthetic[:3], tmp_path / "x.png")
