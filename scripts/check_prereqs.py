"""Check, before `make setup` creates the venv, what this machine must already have.

Run by the Makefile with the interpreter that will create the venv (stdlib only: nothing is installed yet).
Every unmet prerequisite is reported at once as `error:` + `fix:`, then exit 2; exit 0 prints nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

# Measured: the venv with the CUDA torch build is ~7.0 GB (3.2 GB of it nvidia-* CUDA libraries); with CPU=1 ~2.3 GB.
NEED_GB = {"cuda": 8.0, "cpu": 3.0}
GLIBC_MIN = (2, 35)  # the nvidia-pytriton 0.7.0 wheel (it ships tritonserver) is manylinux_2_35_x86_64
PYTHONS = ((3, 11), (3, 12))


@dataclass
class Facts:
    """What the checks look at; ``gather`` reads them from this machine, tests pass their own."""

    python: tuple[int, int]
    executable: str
    has_ensurepip: bool
    tools: dict[str, bool]
    system: str
    machine: str
    glibc: tuple[int, int] | None
    free_gb: float
    venv_dir: str


def _glibc() -> tuple[int, int] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # "glibc 2.36"
        major, minor = version.split(".")[:2]
        return int(major), int(minor)
    except (ValueError, OSError, AttributeError):
        return None


def _free_gb(path: Path) -> float:
    path = path.absolute()
    while not path.exists():  # the venv folder is not created yet: measure the disk it will be on
        path = path.parent
    return shutil.disk_usage(path).free / 1e9


def gather(venv_dir: str) -> Facts:
    try:
        import ensurepip  # noqa: F401 - Debian/Ubuntu split it out into python3-venv
        has_ensurepip = True
    except ImportError:
        has_ensurepip = False
    return Facts(
        python=sys.version_info[:2],
        executable=sys.executable,
        has_ensurepip=has_ensurepip,
        tools={t: shutil.which(t) is not None for t in ("make", "git")},
        system=platform.system(),
        machine=platform.machine(),
        glibc=_glibc(),
        free_gb=_free_gb(Path(venv_dir)),
        venv_dir=venv_dir,
    )


def problems(f: Facts, cpu: bool) -> list[tuple[str, str]]:
    """[(error, fix)] for every prerequisite ``f`` does not meet."""
    found = []
    py = "{}.{}".format(*f.python)
    if f.python not in PYTHONS:
        found.append((f"Python {py} ({f.executable}) is not supported: histosynth needs Python 3.11 or 3.12",
                      "install python3.11 or python3.12 and run `make setup PYTHON=python3.12`"))
    if not f.has_ensurepip:
        found.append((f"Python {py} cannot create a venv: its ensurepip module is missing",
                      f"install the venv package of your Python (Debian/Ubuntu: sudo apt-get install python{py}-venv)"))
    for tool, present in f.tools.items():
        if not present:
            found.append((f"`{tool}` is not on PATH", f"install it (Debian/Ubuntu: sudo apt-get install {tool})"))
    if (f.system, f.machine) != ("Linux", "x86_64"):
        found.append((f"this is {f.system} {f.machine}: the tritonserver in nvidia-pytriton is built for Linux x86_64 only",
                      "use a Linux x86_64 machine (or a container/VM with one)"))
    elif f.glibc is None or f.glibc < GLIBC_MIN:
        have = "no glibc" if f.glibc is None else "glibc {}.{}".format(*f.glibc)
        found.append((f"{have} found: the nvidia-pytriton wheel needs glibc >= {GLIBC_MIN[0]}.{GLIBC_MIN[1]}",
                      "use a newer distribution (Ubuntu 22.04+, Debian 12+, RHEL 10+), or a container of one"))
    need = NEED_GB["cpu" if cpu else "cuda"]
    if f.free_gb < need:
        build = "the CPU-only torch build (CPU=1)" if cpu else "the CUDA torch build"
        hint = "free some space or put the venv on a larger disk (make setup VENV=/path/to/venv)"
        found.append((f"{f.free_gb:.1f} GB free where the venv goes ({f.venv_dir}); it needs ~{need:.0f} GB with {build}",
                      hint if cpu else hint + ", or install the CPU-only torch build with `make setup CPU=1` (~3 GB)"))
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", default=".venv", help="where the venv will be created (its disk is checked for space)")
    ap.add_argument("--cpu", action="store_true", help="the CPU-only torch build will be installed (CPU=1)")
    args = ap.parse_args(argv)
    found = problems(gather(args.venv), args.cpu)
    for error, fix in found:
        print(f"error: {error}\n  fix: {fix}", file=sys.stderr)
    return 2 if found else 0


if __name__ == "__main__":
    sys.exit(main())
