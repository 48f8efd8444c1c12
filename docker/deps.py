"""Print the project's runtime requirements from pyproject.toml, one per line: the dependencies plus the optional
groups named by ``--extras``, minus ``--exclude`` names.

Images install dependencies in their own layer before the source is copied (a code change does not reinstall
torch). The pipeline images add the ``kfp`` extra (the KFP executor runs their components) but not ``serve`` (the
local tritonserver binary), and the light CPU image leaves out torchvision and takes torch from its own build
argument (the CPU wheel). Standard library only: runs in a bare base image.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path


def requirements(pyproject: Path, exclude: set[str], extras: tuple[str, ...] = ()) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"error: no extra {', '.join(unknown)} in {pyproject} (it has {', '.join(optional)})")
    deps = [*project["dependencies"], *(d for e in extras for d in optional[e])]
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
    ap.add_argument("--extras", default="", help="comma-separated optional-dependency groups to add (e.g. kfp)")
    args = ap.parse_args()
    exclude = {n.strip().lower().replace("_", "-") for n in args.exclude.split(",") if n.strip()}
    extras = tuple(e.strip() for e in args.extras.split(",") if e.strip())
    print("\n".join(requirements(args.pyproject, exclude, extras)))


if __name__ == "__main__":
    main()
