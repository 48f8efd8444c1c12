"""Downloads and dataset recipes against a real HTTP server on 127.0.0.1, with tiny archives shaped like the
real datasets (an NCT-CRC-HE-100K zip of class folders, a MedMNIST PathMNIST npz)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from histosynth.data.download import download
from histosynth.data.patches import build_patches
from histosynth.data.recipes import PATH_LABELS, adapt_pcam, fetch_dataset, get_recipe, list_recipes, recipe_cache, resolve_files
from histosynth.data.split import SPLITS, check_no_leakage
from histosynth.data.store import PatchStore
from histosynth.errors import DataError

pytestmark = pytest.mark.integration


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def nct_zip(helpers) -> bytes:
    """NCT-CRC-HE-100K/<CLASS>/<CLASS>-<ID>.tif, 224x224 RGB TIFFs (BACK is glass)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for ci, cls in enumerate(["ADI", "BACK", "TUM"]):
            for k in range(2):
                tissue = None if cls == "BACK" else np.ones((224, 224), bool)
                img = helpers.brightfield(224, 224, tissue, seed=ci * 10 + k)
                b = io.BytesIO()
                Image.fromarray(img).save(b, format="TIFF")
                z.writestr(f"NCT-CRC-HE-100K/{cls}/{cls}-AAA{k}XYZ.tif", b.getvalue())
        z.writestr("NCT-CRC-HE-100K/README.txt", "not an image")
        z.writestr("__MACOSX/NCT-CRC-HE-100K/ADI/._ADI-AAA0XYZ.tif", b"junk")
    return buf.getvalue()


def pathmnist_npz(n=(20, 6, 8), seed=0) -> tuple[bytes, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, k in zip(SPLITS, n):
        arrays[f"{split}_images"] = rng.integers(0, 256, (k, 64, 64, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 9, (k, 1)).astype(np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue(), arrays


def test_nct_zip_download_cache_and_adapter(http_server, helpers, tmp_path):
    data = nct_zip(helpers)
    url = http_server.add("/records/1214456/files/NCT-CRC-HE-100K.zip", data)
    out = tmp_path / "nct"
    r = fetch_dataset("nct-crc-he-100k", url=url, sha256=sha(data), out=out, progress=False)
    assert len(http_server.requests) == 1
    cached = recipe_cache("nct-crc-he-100k") / "NCT-CRC-HE-100K.zip"
    assert cached.read_bytes() == data and not cached.with_name(cached.name + ".part").exists()
    # adapter: class folders, BACK excluded, junk skipped, SOURCES.json
    assert r["layout"] == "folders" and r["counts"] == {"adi": 2, "tum": 2} and r["excluded_classes"] == {"back": 2}
    assert sorted(p.name for p in (out / "adi").iterdir()) == ["adi_aaa0xyz.tif", "adi_aaa1xyz.tif"]
    src = json.loads((out / "SOURCES.json").read_text())
    assert src["recipe"] == "nct-crc-he-100k" and src["archives"][0]["sha256"] == sha(data)
    # cache hit: a second fetch sends no request
    fetch_dataset("nct-crc-he-100k", url=url, sha256=sha(data), out=out, progress=False)
    assert len(http_server.requests) == 1
    # the layout feeds `data patches`: each 224 px tile gives 3x3 64 px patches in one region
    s = build_patches(out, tmp_path / "patches", progress=False)
    assert s["counts"] == {"adi": 18, "tum": 18}
    assert {r["region"] for r in PatchStore(tmp_path / "patches").records} == {0}


def test_checksum_mismatch_is_an_error_and_keeps_nothing_partial(http_server, helpers, tmp_path):
    data = nct_zip(helpers)
    url = http_server.add("/NCT-CRC-HE-100K.zip", data)
    with pytest.raises(DataError) as e:
        fetch_dataset("nct-crc-he-100k", url=url, sha256="0" * 64, out=tmp_path / "nct", progress=False)
    assert "checksum mismatch" in e.value.problem and sha(data) in e.value.hint
    cache = recipe_cache("nct-crc-he-100k")
    assert not (cache / "NCT-CRC-HE-100K.zip").exists() and not (cache / "NCT-CRC-HE-100K.zip.part").exists()
    assert not (tmp_path / "nct").exists()
    # the published md5 is checked when no sha256 is given: this archive is not the real one
    with pytest.raises(DataError, match="md5 035777cf327776a71a05c95da6d6325f"):
        fetch_dataset("nct-crc-he-100k", url=url, out=tmp_path / "nct", progress=False)


def test_pathmnist_npz_goes_straight_to_splits(http_server, tmp_path):
    data, arrays = pathmnist_npz()
    url = http_server.add("/pathmnist_64.npz", data)
    out = tmp_path / "pathmnist"
    r = fetch_dataset("pathmnist", url=url, sha256=sha(data), out=out, progress=False)
    assert r["layout"] == "splits"
    for split in SPLITS:
        st = PatchStore(out / split)
        assert st.classes == PATH_LABELS and len(st) == len(arrays[f"{split}_images"])
        np.testing.assert_array_equal(st.images, arrays[f"{split}_images"])
        np.testing.assert_array_equal(st.labels, arrays[f"{split}_labels"][:, 0])
    assert check_no_leakage(out)["patches"] == 34
    rep = json.loads((out / "split_report.json").read_text())
    assert rep["totals"] == {"train": 20, "val": 6, "test": 8} and set(rep["grouping"].values()) == {"predefined"}
    fetch_dataset("pathmnist", url=url, sha256=sha(data), out=out, progress=False)
    assert len(http_server.requests) == 1


def test_not_a_medmnist_npz(http_server, tmp_path):
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros(3))
    url = http_server.add("/pathmnist_64.npz", buf.getvalue())
    with pytest.raises(DataError, match="not a MedMNIST npz"):
        fetch_dataset("pathmnist", url=url, sha256=sha(buf.getvalue()), out=tmp_path / "o", progress=False)


def test_resume_from_part_file(http_server, tmp_path):
    data = bytes(range(256)) * 4000
    url = http_server.add("/big.bin", data)
    dest = tmp_path / "big.bin"
    (tmp_path / "big.bin.part").write_bytes(data[:300_000])  # an interrupted earlier download
    download(url, dest, sha256=sha(data), progress=False)
    assert dest.read_bytes() == data
    assert http_server.requests == [("/big.bin", "bytes=300000-")]


def test_server_ignoring_range_restarts_the_part(http_server, tmp_path):
    http_server.httpd.honour_range = False
    data = b"abcdef" * 50_000
    url = http_server.add("/f.bin", data)
    (tmp_path / "f.bin.part").write_bytes(b"garbage" * 10)
    download(url, tmp_path / "f.bin", sha256=sha(data), progress=False)
    assert (tmp_path / "f.bin").read_bytes() == data


def test_unpublished_checksum_is_recorded_and_then_enforced(http_server, tmp_path):
    url = http_server.add("/x.zip", b"first version")
    dest = tmp_path / "x.zip"
    with pytest.warns(UserWarning, match="no published checksum"):
        download(url, dest, progress=False)
    assert (tmp_path / "x.zip.sha256").read_text().split()[0] == sha(b"first version")
    download(url, dest, progress=False)  # cache hit, verified against the record
    assert len(http_server.requests) == 1
    dest.write_bytes(b"tampered")  # the cached file changes: re-downloaded and checked against the record
    with pytest.warns(UserWarning, match="does not match"):
        download(url, dest, progress=False)
    assert dest.read_bytes() == b"first version" and len(http_server.requests) == 2


def test_network_failure_names_cache_path_and_file_url(tmp_path, port):
    dest = tmp_path / "cache" / "NCT-CRC-HE-100K.zip"
    with pytest.raises(DataError) as e:
        download(f"http://127.0.0.1:{port}/NCT-CRC-HE-100K.zip", dest, progress=False, timeout=5)
    assert "cannot reach" in e.value.problem
    assert str(dest) in e.value.hint and "--url file://" in e.value.hint


def test_http_error(http_server, tmp_path):
    url = http_server.add("/exists", b"x")
    with pytest.raises(DataError, match="HTTP 404"):
        download(url.replace("/exists", "/missing"), tmp_path / "m", progress=False)


def test_offline_mode_and_file_urls(monkeypatch, tmp_path, helpers):
    monkeypatch.setenv("HISTOSYNTH_OFFLINE", "1")
    with pytest.raises(DataError) as e:
        fetch_dataset("nct-crc-he-100k", progress=False)
    assert "offline" in e.value.problem and str(recipe_cache("nct-crc-he-100k") / "NCT-CRC-HE-100K.zip") in e.value.hint
    # a pre-downloaded archive still works offline through file://
    data = nct_zip(helpers)
    local = tmp_path / "dl" / "nct.zip"
    local.parent.mkdir()
    local.write_bytes(data)
    r = fetch_dataset("nct-crc-he-100k", url=local.as_uri(), sha256=sha(data), out=tmp_path / "nct", progress=False)
    assert r["counts"] == {"adi": 2, "tum": 2}


def test_recipe_table_and_overrides():
    names = {r.name for r in list_recipes()}
    assert {"bach", "pcam", "nct-crc-he-100k", "pathmnist", "bloodmnist", "breast-cytology", "b-all"} <= names
    for r in list_recipes():
        for f in r.files:
            assert f.url.startswith("https://") and (f.sha256 is None or len(f.sha256) == 64) and (f.md5 is None or len(f.md5) == 32)
    with pytest.raises(DataError, match="unknown dataset"):
        get_recipe("imagenet")
    with pytest.raises(DataError, match="3 file"):
        resolve_files(get_recipe("pcam"), url="http://127.0.0.1/one")
    files = resolve_files(get_recipe("pathmnist"), url="file:///tmp/p.npz", sha256="A" * 64)
    assert files[0].url == "file:///tmp/p.npz" and files[0].sha256 == "a" * 64 and files[0].md5 is None


def test_pcam_without_h5py_says_how_to_fix(tmp_path):
    pytest.importorskip("numpy")
    try:
        import h5py  # noqa: F401

        pytest.skip("h5py is installed")
    except ImportError:
        pass
    with pytest.raises(DataError) as e:
        adapt_pcam(get_recipe("pcam"), [tmp_path / "x.h5.gz", tmp_path / "y.h5.gz"], tmp_path / "o", classes=["normal", "tumour"])
    assert "pip install h5py" in e.value.hint
