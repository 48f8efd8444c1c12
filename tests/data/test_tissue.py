from __future__ import annotations

import numpy as np
import pytest

from histosynth.data.tissue import TissueMap, TissueParams, binary_closing_disk, tissue_mask

pytestmark = pytest.mark.unit


def test_mask_recovers_known_tissue_area(helpers):
    h, w = 400, 600
    truth = helpers.disk_mask(h, w, 180, 250, 120) | (np.mgrid[:h, :w][1] > 480)  # a disk + a band on the right
    img = helpers.brightfield(h, w, truth, seed=1)
    mask = tissue_mask(img)
    area_err = abs(int(mask.sum()) - int(truth.sum())) / truth.sum()
    assert area_err < 0.03, f"mask area {mask.sum()} vs true {truth.sum()}"
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.95


def test_all_tissue_image_is_not_split_by_otsu(helpers):
    """Without a background mode Otsu would cut tissue in two; the clamped threshold keeps it whole."""
    h, w = 256, 256
    rng = np.random.default_rng(3)
    pale = helpers.brightfield(h, w, np.ones((h, w), bool), seed=2)
    dark = (rng.random((h, w)) > 0.6)[..., None]
    img = np.where(dark, (pale * 0.55).astype(np.uint8), pale)  # pale stroma + dark nuclei
    assert tissue_mask(img).mean() > 0.99


def test_empty_glass_has_no_tissue(helpers):
    img = helpers.brightfield(300, 300, None, seed=4)
    assert tissue_mask(img).sum() == 0


def test_small_specks_are_removed_and_small_holes_filled(helpers):
    h, w = 300, 300
    truth = helpers.disk_mask(h, w, 150, 150, 90)
    holes = helpers.disk_mask(h, w, 150, 150, 3)
    specks = helpers.disk_mask(h, w, 20, 20, 2) | helpers.disk_mask(h, w, 280, 30, 2)
    img = helpers.brightfield(h, w, (truth & ~holes) | specks, seed=5)
    mask = tissue_mask(img)
    assert mask[150, 150], "a small hole inside tissue is filled"
    assert not mask[20, 20] and not mask[280, 30], "isolated specks are dropped"


def test_closing_matches_structuring_element():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    m = ndimage.gaussian_filter(rng.random((120, 160)), 2) > 0.52
    for r in (1, 4):
        disk = np.add.outer(np.arange(-r, r + 1) ** 2, np.arange(-r, r + 1) ** 2) <= r * r
        pad = np.pad(m, r + 1, mode="edge")
        ref = ndimage.binary_closing(pad, structure=disk)[r + 1 : -(r + 1), r + 1 : -(r + 1)]
        assert np.array_equal(binary_closing_disk(m, r), ref)


def test_tissue_map_fraction_in_level0_coordinates():
    mask = np.zeros((100, 100), bool)
    mask[:, :50] = True  # left half is tissue
    tm = TissueMap(mask, scale=0.5)  # mask is half the level-0 size (200x200)
    assert tm.fraction(0, 0, 100, 100) == 1.0
    assert tm.fraction(100, 0, 100, 100) == 0.0
    assert tm.fraction(50, 0, 100, 100) == pytest.approx(0.5)
    assert tm.fraction(199, 199, 1, 1) == 0.0  # at least one mask pixel is looked at
    assert tm.fraction_total == pytest.approx(0.5)


def test_params_are_serialisable():
    d = TissueParams().to_dict()
    assert d["sat_max"] >= d["sat_min"] and d["od_max"] >= d["od_min"]
