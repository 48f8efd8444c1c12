"""Print the project's runtime requirements from pyproject.toml, one per line, minus ``--exclude`` names.

Images install dependencies in their own layer before the source is copied (a code change does not reinstall
torch), and the light CPU image leaves out what it does not run (torchvision, the serving-only nvidia-pytriton)
and takes torch from its own build argument (the CPU wheel). Standard library only: runs in a bare base image.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path


def requirements(pyproject: Path, exclude: set[str]) -> list[str]:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    keep = []
    for dep in deps:
        name = re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0].lower().replace("_", "-")
        if name not in exclude:
            keep.append(dep)
    return keep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    ap.add_argument("--exclude", default="", help="comma-separated distribution names to leave out")
    args = ap.parse_args()
    exclude = {n.strip().lower().replace("_", "-") for n in args.exclude.split(",") if n.strip()}
    print("\n".join(requirements(args.pyproject, exclude)))


if __name__ == "__main__":
    main()
