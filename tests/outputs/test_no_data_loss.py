"""Commands that write replace only what histosynth wrote before; anything else is refused (exit 2) unless --force,
and a file is never used as a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from histosynth.data.store import Patch, write_store
from histosynth.errors import HistosynthError
from histosynth.files.outputs import OutputError, check_dir, check_file

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def refused(result: tuple[int, str, str], *words: str) -> None:
    code, _, err = result
    assert code == 2, err
    assert "error:" in err and "fix:" in err and "Traceback" not in err
    for w in words:
        assert w in err, err


def user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "thesis.txt").write_text("four years of work")
    return path


def raw_tree(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        img = np.full((128, 128, 3), (200, 120, 170), np.uint8) + rng.integers(0, 20, (128, 128, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / cls / "img.png")
    return root


def small_store(path: Path) -> Path:
    rng = np.random.default_rng(0)
    patches = [
        Patch(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), cls, {"source": f"{s}.png", "slide": f"{cls}{s}", "region": i, "x": i, "y": 0})
        for cls in ("a", "b")
        for s in range(4)
        for i in range(3)
    ]
    write_store(path, patches)
    return path


def test_data_patches_refuses_a_user_folder_and_a_file(cli, tmp_path):
    src = raw_tree(tmp_path / "raw")
    mine = user_folder(tmp_path / "mine")
    refused(cli("data", "patches", "--src", src, "--out", mine, "--min-tissue", "0"), "not written by histosynth", "--force")
    assert (mine / "thesis.txt").read_text() == "four years of work"
    readme = tmp_path / "README.md"
    readme.write_text("# my project\n")
    for extra in ([], ["--force"]):
        refused(cli("data", "patches", "--src", src, "--out", readme, "--min-tissue", "0", *extra), "is a file, not a folder")
        assert readme.read_text() == "# my project\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "mine", "raw"]


def test_data_patches_replaces_its_own_store_but_not_added_files(cli, tmp_path):
    src = raw_tree(tmp_path / "raw")
    store = tmp_path / "store"
    assert cli("data", "patches", "--src", src, "--out", store, "--min-tissue", "0")[0] == 0
    assert cli("data", "patches", "--src", src, "--out", store, "--min-tissue", "0", "--size", "32", "--stride", "32")[0] == 0
    (store / "notes.txt").write_text("mine")
    refused(cli("data", "patches", "--src", src, "--out", store, "--min-tissue", "0"), "notes.txt")
    assert (store / "notes.txt").read_text() == "mine"
    assert cli("data", "patches", "--src", src, "--out", store, "--min-tissue", "0", "--force")[0] == 0
    assert not (store / "notes.txt").exists() and (store / "manifest.json").is_file()


def test_data_split_refuses_a_user_folder(cli, tmp_path):
    store = small_store(tmp_path / "store")
    mine = user_folder(tmp_path / "mine")
    refused(cli("data", "split", "--src", store, "--out", mine), "not written by histosynth")
    assert (mine / "thesis.txt").read_text() == "four years of work"
    splits = tmp_path / "splits"
    assert cli("data", "split", "--src", store, "--out", splits, "--val", "0.25", "--test", "0.25")[0] == 0
    assert cli("data", "split", "--src", store, "--out", splits, "--val", "0.25", "--test", "0.25", "--seed", "1")[0] == 0
    assert cli("data", "split", "--src", store, "--out", mine, "--val", "0.25", "--test", "0.25", "--force")[0] == 0
    assert not (mine / "thesis.txt").exists() and (mine / "train" / "manifest.json").is_file()


def test_pipeline_compile_bad_paths_are_user_errors(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    blocker = tmp_path / "BAD"
    blocker.write_text("a file")
    refused(cli("pipeline", "compile", "train", "-o", blocker / "PATH.yaml"), "is a file, not a folder")
    notes = tmp_path / "notes.yaml"
    notes.write_text("mine: true\n")
    refused(cli("pipeline", "compile", "train", "-o", notes), "not written by histosynth")
    assert notes.read_text() == "mine: true\n"
    refused(cli("pipeline", "compile", "train", "-o", tmp_path), "is a folder")
    ours = tmp_path / "train.yaml"
    assert cli("pipeline", "compile", "train", "-o", ours)[0] == 0
    assert cli("pipeline", "compile", "train", "-o", ours)[0] == 0  # recompiling over our own YAML is fine


def test_other_outputs_refuse_before_doing_any_work(cli, tmp_path):
    mine = user_folder(tmp_path / "mine")
    readme = tmp_path / "README.md"
    readme.write_text("# mine\n")
    bundle = tmp_path / "no-such.pt"  # never reached: the output is checked first
    refused(cli("synth", "--out", mine, "--url", "127.0.0.1:1"), "not written by histosynth")
    refused(cli("evaluate", "report", str(readme), "--out", mine), "not written by histosynth")
    refused(cli("evaluate", "--bundle", bundle, "--out", readme), "not written by histosynth")
    refused(cli("snn", "search", "--bundle", bundle, "--image", readme, "--out", readme), "not written by histosynth")
    refused(cli("snn", "gradcam", "--bundle", bundle, "--out", mine, "--no-mlflow"), "not written by histosynth")
    refused(cli("snn", "pairs", "--root", tmp_path, "--out", mine), "not written by histosynth")
    refused(cli("data", "samples", "--out", readme), "is a file, not a folder")
    refused(cli("data", "fetch", "pcam", "--out", mine), "not written by histosynth")
    assert (mine / "thesis.txt").read_text() == "four years of work" and sorted(p.name for p in mine.iterdir()) == ["thesis.txt"]
    assert readme.read_text() == "# mine\n"


def test_check_dir_and_check_file_rules(tmp_path):
    assert check_dir(tmp_path / "new", marker="m.json") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    check_dir(tmp_path / "empty", marker="m.json")
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "m.json").write_text('{"format": "histosynth.thing/1"}')
    (ours / "a.npy").write_bytes(b"")
    check_dir(ours, marker="m.json", names=("*.npy",))
    with pytest.raises(OutputError, match="a.npy"):
        check_dir(ours, marker="m.json")
    (ours / "m.json").write_text('{"format": "someone-else/1"}')
    with pytest.raises(OutputError, match="not written by histosynth"):
        check_dir(ours, marker="m.json", names=("*.npy",))
    check_dir(ours, marker="m.json", force=True)
    f = tmp_path / "f.json"
    f.write_text("{}")
    with pytest.raises(OutputError, match="not written by histosynth"):
        check_file(f)
    check_file(f, force=True)
    f.write_text('{"format": "histosynth.x/1"}')
    check_file(f)
    assert issubclass(OutputError, HistosynthError)
