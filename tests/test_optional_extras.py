"""kfp, kfp-kubernetes and nvidia-pytriton are optional extras (``.[kfp]``, ``.[serve]``): every library module
imports without them, so `pip install histosynth` alone gives a working CLI and library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
BLOCKED = ("kfp", "pytriton")
# Run inside Triton's python backend only (its host module triton_python_backend_utils exists nowhere else).
LAYER = {"histosynth.serving.triton_model"}

PROBE = """
import importlib, importlib.abc, pkgutil, sys
blocked, layer = {blocked!r}, {layer!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{{name}} is blocked: an optional extra")

sys.meta_path.insert(0, Block())
import histosynth
for m in pkgutil.walk_packages(histosynth.__path__, "histosynth."):
    if m.name not in layer:
        importlib.import_module(m.name)
leaked = sorted(n for n in sys.modules if n.split(".")[0] in blocked)
assert not leaked, leaked
print("imported", len([n for n in sys.modules if n.startswith("histosynth")]))
"""


@pytest.mark.unit
def test_library_imports_without_the_kfp_and_serve_extras():
    probe = PROBE.format(blocked=BLOCKED, layer=LAYER)
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=600, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("imported")
