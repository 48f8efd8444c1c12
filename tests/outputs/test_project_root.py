"""State and data follow the project, not the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from histosynth import defaults

pytestmark = pytest.mark.unit


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A histosynth project (its dvc.yaml runs histosynth) with a nested subfolder; no HISTOSYNTH_HOME/DATA."""
    root = tmp_path / "proj"
    (root / "notebooks" / "deep").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages:\n  patches:\n    cmd: histosynth data patches\n")
    monkeypatch.delenv(defaults.ENV_HOME, raising=False)
    monkeypatch.delenv(defaults.ENV_DATA, raising=False)
    return root


def test_paths_walk_up_to_the_project_root(project, monkeypatch):
    monkeypatch.chdir(project / "notebooks" / "deep")
    p = defaults.paths()
    assert p.home == project / ".histosynth" and p.data == project / "data"
    assert defaults.describe_state() == f"state {project / '.histosynth'} (project {project})"
    monkeypatch.setenv(defaults.ENV_HOME, str(project / "elsewhere"))
    assert defaults.paths().home == project / "elsewhere" and "HISTOSYNTH_HOME" in defaults.describe_state()


def test_a_dvc_yaml_of_another_tool_is_not_a_project(tmp_path, monkeypatch):
    (tmp_path / "other" / "sub").mkdir(parents=True)
    (tmp_path / "other" / "dvc.yaml").write_text("stages:\n  train:\n    cmd: python train.py\n")
    monkeypatch.delenv(defaults.ENV_HOME, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.chdir(tmp_path / "other" / "sub")
    assert defaults.project_root() is None
    assert defaults.paths().home == tmp_path / "user" / ".histosynth"  # one store per user, not one per folder
    assert "no histosynth project" in defaults.describe_state()


def test_commands_from_a_subfolder_use_the_project_store(project, monkeypatch, cli):
    sub = project / "notebooks" / "deep"
    monkeypatch.chdir(sub)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, _, err = cli("export", "--name", "nope")
    assert code == 2 and "known models: none" in err and str(project / ".histosynth") in err.replace("\n", "")
    assert (project / ".histosynth" / "mlflow.db").is_file()
    assert not (sub / ".histosynth").exists() and not (project / "notebooks" / ".histosynth").exists()
    code, out, _ = cli("train", "--dry-run")
    assert code == 0 and f"# state {project / '.histosynth'} (project {project})" in out


def test_pipelines_are_found_from_a_subfolder(monkeypatch):
    from histosynth.cli.pipeline import pipelines_dir

    root = Path(__file__).resolve().parents[2]
    monkeypatch.delenv("HISTOSYNTH_PIPELINES", raising=False)
    monkeypatch.chdir(root / "src" / "histosynth")
    assert pipelines_dir() == root / "pipelines"
