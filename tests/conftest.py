"""Shared fixtures: every test gets its own state/data folders, so nothing touches the user's."""

from __future__ import annotations

import os

import pytest
import servers  # tests/ is on pytest's pythonpath (pyproject.toml)
from servers import free_port


@pytest.fixture(autouse=True)
def isolated_state(tmp_path_factory, monkeypatch):
    """HISTOSYNTH_HOME/DATA/CACHE under a temp folder, the local SQLite MLflow store, no telemetry."""
    root = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("HISTOSYNTH_HOME", str(root / "home"))
    monkeypatch.setenv("HISTOSYNTH_DATA", str(root / "data"))
    if "HISTOSYNTH_TEST_CACHE" in os.environ:  # a shared download cache speeds up repeated runs
        monkeypatch.setenv("HISTOSYNTH_CACHE", os.environ["HISTOSYNTH_TEST_CACHE"])
    else:
        monkeypatch.setenv("HISTOSYNTH_CACHE", str(root / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    return root


@pytest.fixture
def private_cache(isolated_state, monkeypatch):
    """A cache folder of this test's own, for tests that assert what the cache holds (the shared download cache
    of ``make test`` also holds what earlier tests computed)."""
    path = isolated_state / "private-cache"
    monkeypatch.setenv("HISTOSYNTH_CACHE", str(path))
    return path


@pytest.fixture
def port():
    return free_port()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on loopback (SQLite backend, proxied artifacts), shared by the session; yields its URL."""
    url, proc = servers.start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield url
    finally:
        servers.stop_server(proc)


@pytest.fixture
def cli(monkeypatch, capsys):
    """``cli("data", "split", ...)`` -> (exit code, stdout, stderr) of the real entry point, in this process."""
    import sys

    from histosynth.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["histosynth", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run
