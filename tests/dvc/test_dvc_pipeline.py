"""The project's real dvc.yaml: `dvc repro` builds versioned data, and a push/pull round trip through a
local directory remote restores it byte for byte."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# several `dvc` subprocesses per test, each allowed 900 s
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A fresh git + DVC repo holding the project's dvc.yaml, params.yaml, configs/ (the pairs stage's preset)
    and .dvc/config."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "dvc.yaml", repo)
    shutil.copy(ROOT / "params.yaml", repo)
    shutil.copytree(ROOT / "configs", repo / "configs")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    env["HISTOSYNTH_DATA"] = str(repo / "data")
    run(["git", "init", "-q"], repo, env)
    run(["git", "config", "user.email", "ci@histosynth"], repo, env)
    run(["git", "config", "user.name", "ci"], repo, env)
    run(["dvc", "init", "-q"], repo, env)
    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    return repo, env


def test_repro_then_push_pull_round_trip(project):
    repo, env = project
    run(["dvc", "repro"], repo, env)
    splits = repo / "data" / "splits"
    for split in ("train", "val", "test"):
        assert (splits / split / "manifest.json").is_file(), f"split {split} missing"
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"samples", "patches", "splits", "pairs"}
    assert lock["stages"]["patches"]["params"]["params.yaml"]["patches"]["size"] == 64

    before = tree_digest(repo / "data")
    run(["dvc", "push"], repo, env)
    remote = repo / ".histosynth" / "dvc-remote"  # the default remote in .dvc/config, project-local
    assert any(remote.rglob("*")), "push wrote nothing to the local remote"

    shutil.rmtree(repo / "data" / "raw")
    shutil.rmtree(repo / "data" / "patches")
    shutil.rmtree(splits)
    shutil.rmtree(repo / "data" / "pairs")
    shutil.rmtree(repo / ".dvc" / "cache")
    run(["dvc", "pull"], repo, env)
    assert tree_digest(repo / "data") == before

    status = run(["dvc", "status"], repo, env)
    assert "up to date" in status.lower() or "changed" not in status.lower()


def test_param_change_reruns_only_downstream(project):
    repo, env = project
    run(["dvc", "repro"], repo, env)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["splits"]["seed"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    log = run(["dvc", "repro"], repo, env)
    assert "Running stage 'splits'" in log
    assert "Running stage 'samples'" not in log and "Running stage 'patches'" not in log
    # the pairs stage follows the pair settings of its preset, and only those
    preset = repo / "configs" / "mft-snn-samples.yaml"
    preset.write_text(preset.read_text().replace("pairs: {}", "pairs:\n  seed: 1"))
    log = run(["dvc", "repro"], repo, env)
    assert "Running stage 'pairs'" in log and "Running stage 'splits'" not in log
    preset.write_text(preset.read_text().replace("log_every: 5", "log_every: 6"))
    assert "Running stage" not in run(["dvc", "repro"], repo, env)
