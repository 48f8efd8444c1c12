"""The suite's own rules: every test is in exactly one group (unit, numerics or integration), so `make test-fast`
and `make test-integration` split the suite without overlap or gaps; and the test runner fails on an empty
selection instead of passing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
BROKEN = "(unit and integration) or (unit and numerics) or (numerics and integration) or not (unit or numerics or integration)"


def _pytest(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTEST": str(Path(sys.executable).parent / "pytest")}
    return subprocess.run([str(ROOT / "scripts" / "run_pytest.sh"), "-p", "no:cacheprovider", *args], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


def test_every_test_is_in_exactly_one_group():
    r = _pytest("--collect-only", "-q", "-m", BROKEN, "tests")
    offenders = [line for line in r.stdout.splitlines() if "::" in line]
    assert r.returncode == 5 and offenders == [], "tests in no group or in two: " + ", ".join(offenders) + r.stderr[-2000:]


def test_an_empty_selection_fails_with_a_message_and_a_real_one_passes():
    r = _pytest("-q", "-m", "unit and not unit", "tests/setup/test_prereqs.py")
    assert r.returncode == 5 and "error: pytest collected no tests" in r.stderr and "fix:" in r.stderr
    r = _pytest("-q", "tests/setup/test_prereqs.py", "-k", "a_machine_that_meets_them")
    assert r.returncode == 0 and "1 passed" in r.stdout and "slowest 15 durations" in r.stdout
