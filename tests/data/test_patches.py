from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from histosynth.data.patches import build_patches, folder_info, scan_class_folders
from histosynth.data.slide import open_slide
from histosynth.data.store import PatchStore
from histosynth.errors import DataError

pytestmark = pytest.mark.unit


@pytest.fixture
def pyramid(tmp_path, helpers):
    """src/he/slide.tif: a 3-level tiled pyramid, 1024x768, tissue in a rectangle x 256..767, y 128..639."""
    h, w = 768, 1024
    truth = np.zeros((h, w), bool)
    truth[128:640, 256:768] = True
    base = helpers.brightfield(h, w, truth, seed=7)
    arrays = helpers.write_pyramid_tiff(tmp_path / "src" / "he" / "slide.tif", base, levels=3)
    return tmp_path / "src", arrays, truth


def test_pyramidal_tiff_is_read_through_openslide(pyramid):
    src, arrays, _ = pyramid
    r = open_slide(src / "he" / "slide.tif")
    try:
        assert r.kind == "openslide"
        assert r.level_count == 3
        assert r.level_dimensions == [(1024, 768), (512, 384), (256, 192)]
        assert r.level_downsamples == [1.0, 2.0, 4.0]
        # read_region takes level coordinates: (40, 30) at level 1 is (80, 60) at level 0
        np.testing.assert_array_equal(r.read_region(40, 30, 1, 64, 48), arrays[1][30:78, 40:104])
    finally:
        r.close()


@pytest.mark.parametrize("level", [0, 1])
def test_wsi_patches_at_level(pyramid, tmp_path, level):
    src, arrays, truth = pyramid
    s = build_patches(src, tmp_path / f"store{level}", size=64, stride=64, level=level, min_tissue=0.9, region=256, progress=False)
    store = PatchStore(tmp_path / f"store{level}")
    recs = store.records
    assert len(recs) == s["count"] > 0
    level_img = arrays[level]
    ds = 2**level
    for rec, img in zip(recs, store.images):
        assert rec["level"] == level and rec["downsample"] == float(ds)
        assert rec["slide"] == "he/slide" and rec["source"] == "he/slide.tif"
        x, y = rec["x"], rec["y"]
        # the stored pixels are the level image at (x, y) in *level* coordinates
        np.testing.assert_array_equal(img, level_img[y : y + 64, x : x + 64])
        # and the patch lies (almost) inside the tissue rectangle, in level-0 coordinates
        assert truth[y * ds : (y + 64) * ds, x * ds : (x + 64) * ds].mean() >= 0.85
    # the expected grid: the rectangle x 256..767, y 128..639 (level 0) holds 8x8 full tiles at level 0,
    # 4x4 at level 1 (128..319 x 64..319 in level-1 px)
    expected = {0: 8 * 8, 1: 4 * 4}[level]
    assert len(recs) == expected


def test_patches_never_cross_region_blocks(tmp_path, helpers):
    h, w = 500, 700
    img = helpers.brightfield(h, w, np.ones((h, w), bool), seed=8)
    helpers.save_png(tmp_path / "src" / "a" / "img.png", img)
    size, stride, region = 64, 48, 160
    build_patches(tmp_path / "src", tmp_path / "store", size=size, stride=stride, min_tissue=0.0, region=region, progress=False)
    recs = PatchStore(tmp_path / "store").records
    ncols = -(-w // region)
    for r in recs:
        rx, ry = r["x"] // region, r["y"] // region
        assert (r["x"] + size - 1) // region == rx and (r["y"] + size - 1) // region == ry, r
        assert (r["region_x"], r["region_y"]) == (rx, ry) and r["region"] == ry * ncols + rx
        assert (r["x"] - rx * region) % stride == 0 and (r["y"] - ry * region) % stride == 0
    # per block of 160 px with stride 48: offsets 0, 48, 96 fit (96 + 64 = 160); edge blocks are narrower
    per_axis = lambda n: sum(len(range(0, min(region, n - b) - size + 1, stride)) for b in range(0, n, region))  # noqa: E731
    assert len(recs) == per_axis(w) * per_axis(h)


def test_min_tissue_filters_and_records_fraction(tmp_path, helpers):
    h, w = 256, 256
    truth = np.zeros((h, w), bool)
    truth[:, :128] = True  # left half tissue
    helpers.save_png(tmp_path / "src" / "a" / "half.png", helpers.brightfield(h, w, truth, seed=9))
    s = build_patches(tmp_path / "src", tmp_path / "store", min_tissue=0.5, progress=False)
    recs = PatchStore(tmp_path / "store").records
    assert s["count"] == 8 and all(r["x"] < 128 for r in recs)
    assert all(r["tissue"] >= 0.9 for r in recs)
    prov = PatchStore(tmp_path / "store").manifest["provenance"]
    assert prov["params"]["min_tissue"] == 0.5 and prov["files"][0]["patches"] == 8


def test_sources_json_hash_goes_into_provenance(tmp_path, helpers):
    src = tmp_path / "src"
    helpers.save_png(src / "a" / "x.png", helpers.brightfield(128, 128, np.ones((128, 128), bool)))
    (src / "SOURCES.json").write_text(json.dumps({"sources": []}))
    build_patches(src, tmp_path / "store", progress=False)
    from histosynth.files.atomic import sha256_file

    assert PatchStore(tmp_path / "store").manifest["provenance"]["sources_json_sha256"] == sha256_file(src / "SOURCES.json")


def test_info_counts_raw_store_and_splits(tmp_path, helpers):
    src = tmp_path / "src"
    for c in ("a", "b"):
        helpers.save_png(src / c / "x.png", helpers.brightfield(128, 128, np.ones((128, 128), bool)))
    assert folder_info(src)["counts"] == {"a": 1, "b": 1}
    build_patches(src, tmp_path / "store", progress=False)
    i = folder_info(tmp_path / "store")
    assert i["kind"] == "store" and i["counts"] == {"a": 4, "b": 4}


# ------------------------------------------------------------------------------------------ bad input


def _good_store(tmp_path, helpers) -> Path:
    src = tmp_path / "good"
    helpers.save_png(src / "a" / "x.png", helpers.brightfield(128, 128, np.ones((128, 128), bool)))
    out = tmp_path / "store"
    build_patches(src, out, progress=False)
    return out


def _assert_store_intact(out: Path, before: str):
    assert PatchStore(out).manifest_hash == before, "a failed run must not touch the existing store"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".store.")], "no temp folders left behind"


def test_corrupt_image_names_file_and_keeps_old_store(tmp_path, helpers):
    out = _good_store(tmp_path, helpers)
    before = PatchStore(out).manifest_hash
    src = tmp_path / "src"
    helpers.save_png(src / "a" / "ok.png", helpers.brightfield(128, 128, np.ones((128, 128), bool)))
    good = (src / "a" / "ok.png").read_bytes()
    (src / "a" / "zz_broken.png").write_bytes(good[: len(good) // 3])  # truncated
    with pytest.raises(DataError) as e:
        build_patches(src, out, progress=False)
    assert "zz_broken.png" in str(e.value) and e.value.hint
    _assert_store_intact(out, before)


def test_skip_bad_lists_skipped_files(tmp_path, helpers):
    src = tmp_path / "src"
    helpers.save_png(src / "a" / "ok.png", helpers.brightfield(128, 128, np.ones((128, 128), bool)))
    (src / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (src / "a" / "notes.txt").write_text("hello")
    s = build_patches(src, tmp_path / "store", strict=False, progress=False)
    assert s["count"] == 4
    skipped = {k["source"]: k["reason"] for k in s["skipped"]}
    assert set(skipped) == {"a/broken.jpg", "a/notes.txt"}
    assert "unsupported format" in skipped["a/notes.txt"]
    assert PatchStore(tmp_path / "store").manifest["provenance"]["skipped"] == s["skipped"]


def test_corrupt_whole_slide_image(tmp_path, helpers):
    src = tmp_path / "src"
    helpers.save_png(src / "a" / "ok.png", helpers.brightfield(128, 128, np.ones((128, 128), bool)))
    (src / "a" / "slide.svs").write_bytes(b"II*\x00" + b"\x00" * 200)  # a TIFF header and nothing else
    with pytest.raises(DataError) as e:
        build_patches(src, tmp_path / "store", progress=False)
    assert "slide.svs" in e.value.problem and e.value.hint


def test_unknown_format(tmp_path, helpers):
    src = tmp_path / "src"
    helpers.save_png(src / "a" / "ok.png", helpers.brightfield(128, 128, np.ones((128, 128), bool)))
    (src / "a" / "scan.czi").write_bytes(b"ZISRAWFILE")
    with pytest.raises(DataError) as e:
        build_patches(src, tmp_path / "store", progress=False)
    assert "scan.czi" in e.value.problem and "unsupported format" in e.value.problem and "--skip-bad" in e.value.hint


def test_empty_folder_and_empty_class(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        build_patches(tmp_path / "src", tmp_path / "store", progress=False)
    (tmp_path / "src" / "a").mkdir()
    with pytest.raises(DataError, match="class folder .* is empty"):
        scan_class_folders(tmp_path / "src")
    with pytest.raises(DataError, match="does not exist"):
        scan_class_folders(tmp_path / "missing")


def test_missing_class_subfolders(tmp_path, helpers):
    helpers.save_png(tmp_path / "src" / "loose.png", helpers.brightfield(128, 128, None))
    with pytest.raises(DataError) as e:
        build_patches(tmp_path / "src", tmp_path / "store", progress=False)
    assert "class subfolders are missing" in e.value.problem and "loose.png" in e.value.problem
    assert "<class>" in e.value.hint


def test_image_smaller_than_patch(tmp_path, helpers):
    helpers.save_png(tmp_path / "src" / "a" / "tiny.png", helpers.brightfield(40, 50, np.ones((40, 50), bool)))
    with pytest.raises(DataError) as e:
        build_patches(tmp_path / "src", tmp_path / "store", size=64, progress=False)
    assert "tiny.png" in e.value.problem and "50x40" in e.value.problem and "--size" in e.value.hint


def test_no_tissue_found(tmp_path, helpers):
    helpers.save_png(tmp_path / "src" / "a" / "glass.png", helpers.brightfield(256, 256, None))
    with pytest.raises(DataError) as e:
        build_patches(tmp_path / "src", tmp_path / "store", progress=False)
    assert "no tissue found" in e.value.problem and "glass.png" in e.value.problem and "--min-tissue" in e.value.hint
    # with min_tissue 0 every patch is kept (e.g. a background class)
    assert build_patches(tmp_path / "src", tmp_path / "store", min_tissue=0, progress=False)["count"] == 16


def test_level_beyond_pyramid(tmp_path, helpers):
    helpers.save_png(tmp_path / "src" / "a" / "x.png", helpers.brightfield(128, 128, np.ones((128, 128), bool)))
    with pytest.raises(DataError) as e:
        build_patches(tmp_path / "src", tmp_path / "store", level=1, progress=False)
    assert "1 pyramid level" in e.value.problem and "--level" in e.value.hint


def test_bad_parameters(tmp_path, helpers):
    helpers.save_png(tmp_path / "src" / "a" / "x.png", helpers.brightfield(128, 128, np.ones((128, 128), bool)))
    with pytest.raises(DataError, match="region"):
        build_patches(tmp_path / "src", tmp_path / "store", size=64, region=32, progress=False)
    with pytest.raises(DataError, match="min tissue"):
        build_patches(tmp_path / "src", tmp_path / "store", min_tissue=1.5, progress=False)


def test_rgba_and_grayscale_images_are_converted(tmp_path, helpers):
    from PIL import Image

    img = helpers.brightfield(128, 128, np.ones((128, 128), bool))
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    Image.fromarray(img).convert("RGBA").save(src / "a" / "rgba.png")
    Image.fromarray(img).convert("L").save(src / "a" / "gray.tif")
    s = build_patches(src, tmp_path / "store", min_tissue=0, progress=False)
    assert s["count"] == 8
    store = PatchStore(tmp_path / "store")
    assert store.images.shape == (8, 64, 64, 3)
    shutil.rmtree(tmp_path / "store")


def test_store_is_reproducible(tmp_path, helpers):
    """Same input and parameters -> byte-identical manifest (what MLflow logs to pin the data), whatever the
    output folder."""
    src = tmp_path / "src"
    truth = helpers.disk_mask(300, 300, 150, 150, 120)
    helpers.save_png(src / "a" / "x.png", helpers.brightfield(300, 300, truth, seed=11))
    build_patches(src, tmp_path / "one" / "patches", progress=False)
    build_patches(src, tmp_path / "two" / "patches", progress=False)
    assert PatchStore(tmp_path / "one" / "patches").manifest_hash == PatchStore(tmp_path / "two" / "patches").manifest_hash
