"""scripts/check_prereqs.py (run by `make setup` before the venv exists) and the Makefile's CPU=1 install path."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("check_prereqs", ROOT / "scripts" / "check_prereqs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


cp = _script()
GOOD = cp.Facts(python=(3, 11), executable="/usr/bin/python3", has_ensurepip=True, tools={"make": True, "git": True},
                system="Linux", machine="x86_64", glibc=(2, 35), free_gb=20.0, venv_dir=".venv")


def _one(facts, cpu=False) -> tuple[str, str]:
    found = cp.problems(facts, cpu)
    assert len(found) == 1, found
    return found[0]


def test_a_machine_that_meets_them_passes():
    assert cp.problems(GOOD, cpu=False) == [] and cp.problems(dataclasses.replace(GOOD, python=(3, 12)), cpu=True) == []


def test_each_missing_prerequisite_is_named_with_its_fix():
    error, fix = _one(dataclasses.replace(GOOD, python=(3, 13)))
    assert "Python 3.13 (/usr/bin/python3) is not supported" in error and "make setup PYTHON=python3.12" in fix
    error, fix = _one(dataclasses.replace(GOOD, has_ensurepip=False))
    assert "ensurepip module is missing" in error and "apt-get install python3.11-venv" in fix
    error, fix = _one(dataclasses.replace(GOOD, tools={"make": True, "git": False}))
    assert error == "`git` is not on PATH" and "apt-get install git" in fix
    error, fix = _one(dataclasses.replace(GOOD, glibc=(2, 31)))
    assert "glibc 2.31 found: the nvidia-pytriton wheel needs glibc >= 2.35" in error and "Ubuntu 22.04+" in fix
    error, _ = _one(dataclasses.replace(GOOD, system="Darwin", machine="arm64"))
    assert "Darwin arm64" in error and "Linux x86_64 only" in error
    error, fix = _one(dataclasses.replace(GOOD, free_gb=5.0))
    assert "5.0 GB free where the venv goes (.venv); it needs ~8 GB with the CUDA torch build" in error and "make setup CPU=1" in fix
    assert cp.problems(dataclasses.replace(GOOD, free_gb=5.0), cpu=True) == []  # enough for the CPU-only build
    error, fix = _one(dataclasses.replace(GOOD, free_gb=2.0), cpu=True)
    assert "needs ~3 GB with the CPU-only torch build (CPU=1)" in error and "CPU=1" not in fix


def test_all_problems_are_reported_at_once():
    bad = dataclasses.replace(GOOD, python=(3, 10), has_ensurepip=False, tools={"make": False, "git": False}, glibc=None, free_gb=0.5)
    assert len(cp.problems(bad, cpu=False)) == 6


def test_the_script_on_this_machine(tmp_path):
    """The real run prints exactly what problems() finds here, as error/fix pairs, and exits 2 only then."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_prereqs.py"), "--venv", str(tmp_path / "venv")], capture_output=True, text=True, timeout=60)
    expected = cp.problems(cp.gather(str(tmp_path / "venv")), cpu=False)
    assert r.returncode == (2 if expected else 0) and r.stdout == ""
    assert r.stderr == "".join(f"error: {e}\n  fix: {f}\n" for e, f in expected)


def _make_n(*args: str) -> list[str]:
    # not the variables of a `make test CPU=1 ...` that may be running this test
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CPU", "VENV", "PYTHON", "STAMP")}
    r = subprocess.run(["make", "-n", "setup", *args], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr
    return [line.strip() for line in r.stdout.splitlines()]


def test_make_setup_checks_prerequisites_first_and_cpu_installs_the_cpu_torch_build(tmp_path):
    venv = str(tmp_path / "venv")  # never created: make -n only prints the commands
    default = _make_n(f"VENV={venv}")
    assert default[0].endswith(f"scripts/check_prereqs.py --venv {venv}") and "-m venv" in default[1]
    assert not any("download.pytorch.org" in line for line in default)
    cpu = _make_n(f"VENV={venv}", "CPU=1")
    assert cpu[0].endswith(f"scripts/check_prereqs.py --venv {venv} --cpu")
    torch_line = next(i for i, line in enumerate(cpu) if "download.pytorch.org" in line)
    assert cpu[torch_line].endswith("pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1")
    project_line = next(i for i, line in enumerate(cpu) if "pip install -e" in line)
    assert torch_line < project_line
    assert [line for line in default if "pip install" in line] == [line for i, line in enumerate(cpu) if "pip install" in line and i != torch_line]
