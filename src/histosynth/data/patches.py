"""Ingest a class-folder tree of images / whole-slide images and cut tissue patches into a patch store.

Input layout (what ``histosynth data samples`` and the dataset recipes write)::

    <src>/<class>/<image or slide>     png/jpg/bmp/tif, or .svs / pyramidal .tif read through OpenSlide
    <src>/SOURCES.json                 optional; its sha256 goes into the store's provenance

Patches are ``size`` px squares read at pyramid ``level`` every ``stride`` px, kept when at least
``min_tissue`` of their area is tissue (:mod:`histosynth.data.tissue`). For split hygiene each image is cut
into a grid of ``region`` px blocks (level pixels) and patches never cross a block boundary, so a split by
(slide, region) cannot put two overlapping patches on both sides. Each record holds ``source`` (path under
``src``), ``slide`` (``<class>/<file stem>``), ``region`` (row-major block id) with ``region_x/region_y``,
``x``, ``y`` (top-left, level pixels), ``level``, ``downsample``, ``size`` and ``tissue`` (fraction).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from histosynth.data.slide import SUPPORTED_EXTS, open_slide
from histosynth.data.store import MANIFEST, Patch, PatchStore, write_store
from histosynth.files.atomic import sha256_file
from histosynth.data.tissue import TissueParams, tissue_map
from histosynth.errors import DataError

SOURCES_FILE = "SOURCES.json"
MAX_FILES_IN_PROVENANCE = 2000


@dataclass(frozen=True)
class PatchParams:
    size: int = 64
    stride: int = 64
    level: int = 0
    min_tissue: float = 0.5
    region: int = 256

    def validate(self) -> None:
        if self.size < 1:
            raise DataError(f"patch size {self.size} must be >= 1", "pass --size 64 (or another positive size)")
        if self.stride < 1:
            raise DataError(f"stride {self.stride} must be >= 1", "pass --stride equal to --size for non-overlapping patches")
        if self.level < 0:
            raise DataError(f"level {self.level} must be >= 0", "level 0 is full resolution")
        if not 0.0 <= self.min_tissue <= 1.0:
            raise DataError(f"min tissue {self.min_tissue} must be within [0, 1]", "pass e.g. --min-tissue 0.5")
        if self.region < self.size:
            raise DataError(f"region {self.region} px is smaller than the patch size {self.size} px", "pass --region >= --size (e.g. 4 x size)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") or part == "__MACOSX" for part in path.relative_to(root).parts)


def scan_class_folders(src: str | Path) -> dict[str, list[Path]]:
    """``{class: [files]}`` (sorted) of a class-folder tree; errors name the folder and the fix."""
    src = Path(src)
    if not src.exists():
        raise DataError(f"input folder '{src}' does not exist", "create it with `histosynth data samples` or `histosynth data fetch NAME`, or pass --src")
    if not src.is_dir():
        raise DataError(f"input '{src}' is not a folder", "pass a folder with one subfolder per class, e.g. data/raw")
    entries = sorted(p for p in src.iterdir() if not p.name.startswith("."))
    stray = [p for p in entries if p.is_file() and p.suffix.lower() in SUPPORTED_EXTS]
    class_dirs = [p for p in entries if p.is_dir() and p.name != "__MACOSX"]
    if stray:
        raise DataError(
            f"'{src}' holds images directly ({', '.join(p.name for p in stray[:3])}{'...' if len(stray) > 3 else ''}); class subfolders are missing",
            f"move each image into {src}/<class>/ (one subfolder per class, e.g. {src}/he_tumour/)",
        )
    if not class_dirs:
        raise DataError(f"'{src}' is empty: no class subfolders", f"put images in {src}/<class>/, or build the sample set with `histosynth data samples --out {src}`")
    out: dict[str, list[Path]] = {}
    for d in class_dirs:
        files = sorted(p for p in d.rglob("*") if p.is_file() and _visible(p, d))
        if not files:
            raise DataError(f"class folder '{d}' is empty", "add images to it or remove the folder")
        out[d.name] = files
    return out


def _slide_patches(path: Path, cls: str, rel: str, p: PatchParams, tparams: TissueParams, stat: dict[str, Any]) -> Iterator[Patch]:
    reader = open_slide(path)
    try:
        stat["reader"] = reader.kind
        stat["levels"] = reader.level_count
        if p.level >= reader.level_count:
            raise DataError(
                f"'{path}' has {reader.level_count} pyramid level(s); level {p.level} does not exist",
                "pass a lower --level (ordinary images and single-level slides only have level 0), or remove the file (or pass --skip-bad)",
            )
        W, H = reader.level_dimensions[p.level]
        ds = reader.level_downsamples[p.level]
        stat["dimensions"] = [W, H]
        if W < p.size or H < p.size:
            raise DataError(
                f"'{path}' is {W}x{H} px at level {p.level}, smaller than one {p.size}x{p.size} patch",
                "pass a smaller --size or a lower --level, or remove the file (or pass --skip-bad)",
            )
        tmap = tissue_map(reader, tparams)
        stat["tissue_fraction"] = round(tmap.fraction_total, 4)
        slide = f"{cls}/{Path(rel).relative_to(cls).with_suffix('').as_posix()}"
        R = p.region
        ncols = math.ceil(W / R)
        nrows = math.ceil(H / R)
        n = candidates = 0
        for ry in range(nrows):
            for rx in range(ncols):
                bx0, by0 = rx * R, ry * R
                bx1, by1 = min(bx0 + R, W), min(by0 + R, H)
                keep: list[tuple[int, int, float]] = []
                for y in range(by0, by1 - p.size + 1, p.stride):
                    for x in range(bx0, bx1 - p.size + 1, p.stride):
                        candidates += 1
                        frac = tmap.fraction(x * ds, y * ds, p.size * ds, p.size * ds)
                        if frac >= p.min_tissue:
                            keep.append((x, y, frac))
                if not keep:
                    continue
                x0 = min(k[0] for k in keep)
                y0 = min(k[1] for k in keep)
                x1 = max(k[0] for k in keep) + p.size
                y1 = max(k[1] for k in keep) + p.size
                block = reader.read_region(x0, y0, p.level, x1 - x0, y1 - y0)
                for x, y, frac in keep:
                    img = np.ascontiguousarray(block[y - y0 : y - y0 + p.size, x - x0 : x - x0 + p.size])
                    n += 1
                    stat["patches"] = n
                    yield Patch(
                        image=img,
                        label=cls,
                        record={
                            "source": rel,
                            "slide": slide,
                            "region": ry * ncols + rx,
                            "region_x": rx,
                            "region_y": ry,
                            "x": x,
                            "y": y,
                            "level": p.level,
                            "downsample": ds,
                            "size": p.size,
                            "tissue": round(frac, 3),
                        },
                    )
        stat["candidates"] = candidates
        if n == 0 and p.min_tissue > 0:
            raise DataError(
                f"no tissue found in '{path}': 0 of {candidates} patches have >= {p.min_tissue:.0%} tissue (tissue covers {tmap.fraction_total:.1%} of the image)",
                "check it is a brightfield image with tissue; else lower --min-tissue, pass a smaller --size or --level, or remove the file (or pass --skip-bad)",
            )
    finally:
        reader.close()


def extract_patches(
    src: str | Path,
    params: PatchParams | None = None,
    *,
    tissue: TissueParams | None = None,
    strict: bool = True,
    files_out: list[dict[str, Any]] | None = None,
    skipped_out: list[dict[str, Any]] | None = None,
    progress: bool = True,
) -> Iterator[Patch]:
    """Yield patches of every image under ``src/<class>/``, classes and files in sorted order.

    ``strict`` (default) raises a :class:`DataError` on the first bad file; otherwise bad files are
    skipped and listed in ``skipped_out``. ``files_out`` receives one statistics dict per file.
    """
    p = params or PatchParams()
    p.validate()
    tparams = tissue or TissueParams()
    src = Path(src)
    classes = scan_class_folders(src)
    files = [(cls, f) for cls in sorted(classes) for f in classes[cls]]
    from tqdm import tqdm

    bar = tqdm(files, desc="patches", unit="file", disable=not progress, leave=False)
    for cls, f in bar:
        rel = f.relative_to(src).as_posix()
        stat: dict[str, Any] = {"source": rel, "class": cls, "patches": 0}
        bar.set_postfix_str(rel[-40:])
        try:
            yield from _slide_patches(f, cls, rel, p, tparams, stat)
        except DataError as e:
            if strict:
                raise
            stat["error"] = e.problem
            if skipped_out is not None:
                skipped_out.append({"source": rel, "class": cls, "reason": e.problem, "patches_before_error": stat.get("patches", 0)})
        if files_out is not None:
            files_out.append(stat)


def build_patches(
    src: str | Path,
    out: str | Path,
    size: int = 64,
    stride: int = 64,
    level: int = 0,
    min_tissue: float = 0.5,
    region: int = 256,
    *,
    strict: bool = True,
    tissue: TissueParams | None = None,
    progress: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """``histosynth data patches``: extract patches from ``src`` into a store at ``out`` (atomic).

    Returns a summary: out, count, counts per class, per-file statistics, skipped files, seconds.
    """
    t0 = time.perf_counter()
    src, out = Path(src), Path(out)
    params = PatchParams(size=size, stride=stride, level=level, min_tissue=min_tissue, region=region)
    params.validate()
    tparams = tissue or TissueParams()
    files: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    sources = src / SOURCES_FILE

    def provenance() -> dict[str, Any]:
        return {
            "stage": "patches",
            "src": src.name,
            "params": params.to_dict(),
            "tissue": tparams.to_dict(),
            "strict": strict,
            "sources_json_sha256": sha256_file(sources) if sources.is_file() else None,
            # per-file statistics; for big datasets (100k tiles) only per-class totals, to keep the manifest small
            "files": files if len(files) <= MAX_FILES_IN_PROVENANCE else None,
            "files_per_class": {c: sum(1 for f in files if f["class"] == c) for c in sorted({f["class"] for f in files})},
            "skipped": skipped,
        }

    gen = extract_patches(src, params, tissue=tparams, strict=strict, files_out=files, skipped_out=skipped, progress=progress)
    write_store(out, gen, classes=None, provenance=provenance, force=force)
    store = PatchStore(out)
    all_classes = sorted(scan_class_folders(src))
    empty = [c for c in all_classes if c not in store.classes]
    return {
        "out": str(out),
        "count": len(store),
        "counts": store.manifest["counts"],
        "classes": store.classes,
        "empty_classes": empty,
        "files": files,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def folder_info(path: str | Path) -> dict[str, Any]:
    """Counts per class of a store, a splits folder (train/val/test stores) or a raw class-folder tree."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        s = PatchStore(path)
        return {"kind": "store", "path": str(path), "count": len(s), "patch_size": list(s.patch_size), "classes": s.classes, "counts": s.manifest["counts"], "provenance_stage": s.manifest.get("provenance", {}).get("stage")}
    order = {"train": 0, "val": 1, "test": 2}
    found = [d for d in path.iterdir() if (d / MANIFEST).is_file()] if path.is_dir() else []
    splits = {d.name: d for d in sorted(found, key=lambda d: (order.get(d.name, 3), d.name))}
    if splits:
        info: dict[str, Any] = {"kind": "splits", "path": str(path), "splits": {}}
        for name, d in splits.items():
            s = PatchStore(d)
            info["splits"][name] = {"count": len(s), "counts": s.manifest["counts"]}
            info["classes"] = s.classes
        rep = path / "split_report.json"
        if rep.is_file():
            info["report"] = json.loads(rep.read_text())
        return info
    classes = scan_class_folders(path)
    return {
        "kind": "raw",
        "path": str(path),
        "classes": sorted(classes),
        "counts": {c: len(fs) for c, fs in sorted(classes.items())},
        "bytes": {c: sum(f.stat().st_size for f in fs) for c, fs in sorted(classes.items())},
    }
