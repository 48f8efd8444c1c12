"""Shared fixtures: every test gets its own state/data folders, so nothing touches the user's."""

from __future__ import annotations

import os
import socket

import pytest


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port():
    return free_port()
