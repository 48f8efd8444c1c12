"""The patch store: uint8 image shards + one JSON manifest + per-patch records.

Training memory-maps the shards, so no PNG is decoded per epoch. Layout of a store folder::

    manifest.json       format, classes, patch size, shard list (file, count, sha256), provenance
    records.jsonl       one line per patch: class, source, slide, region, x, y, level
    labels.npy          int64 class ids, one per patch
    images-00000.npy    uint8 (n, H, W, 3) shards, at most `shard_size` patches each
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from histosynth.errors import DataError
from histosynth.files.atomic import sha256_file, swap_in, temp_beside
from histosynth.files.outputs import check_dir

FORMAT = "histosynth.patches/1"
MANIFEST = "manifest.json"
RECORDS = "records.jsonl"
LABELS = "labels.npy"
SHARD_SIZE = 4096


@dataclass
class Patch:
    image: np.ndarray  # uint8 (H, W, 3)
    label: str  # class name
    record: dict[str, Any] = field(default_factory=dict)  # source, slide, region, x, y, level


def write_store(
    out_dir: str | Path,
    patches: Iterable[Patch],
    classes: list[str] | None = None,
    provenance: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    shard_size: int = SHARD_SIZE,
    force: bool = False,
) -> Path:
    """Write patches as a store, atomically: built in a temp folder beside ``out_dir``, then renamed.

    ``classes`` fixes the label order (else sorted names seen). An existing store at ``out_dir`` is
    replaced only once the new one is complete, so a failed run loses no data; any other folder only with
    ``force``. ``provenance`` may be a callable, called once every patch has been consumed (for statistics
    gathered while generating them).
    """
    out_dir = check_store_dir(out_dir, force)
    tmp = temp_beside(out_dir)
    try:
        shards: list[dict[str, Any]] = []
        names: list[str] = []
        buf: list[np.ndarray] = []
        size: tuple[int, int] | None = None
        with open(tmp / RECORDS, "w") as rec:
            for p in patches:
                img = np.asarray(p.image)
                if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                    raise DataError(f"patch from {p.record.get('source', '?')} has shape {img.shape} dtype {img.dtype}", "patches must be uint8 (H, W, 3) RGB")
                if size is None:
                    size = img.shape[:2]
                elif img.shape[:2] != size:
                    raise DataError(f"patch sizes differ in one store: {img.shape[:2]} vs {size}", "extract all patches at one size")
                buf.append(img)
                names.append(p.label)
                rec.write(json.dumps({"class": p.label, **p.record}, sort_keys=True) + "\n")
                if len(buf) == shard_size:
                    shards.append(_flush(tmp, len(shards), buf))
                    buf = []
            if buf:
                shards.append(_flush(tmp, len(shards), buf))
        if not names:
            raise DataError(f"no patches to write to {out_dir}", "check the input folder and the tissue/size settings (min_tissue, patch size)")
        classes = list(classes) if classes else sorted(set(names))
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DataError(f"patches have classes {unknown} not in the class list {classes}")
        index = {c: i for i, c in enumerate(classes)}
        np.save(tmp / LABELS, np.array([index[n] for n in names], dtype=np.int64))
        manifest = {
            "format": FORMAT,
            "classes": classes,
            "count": len(names),
            "patch_size": list(size),
            "counts": {c: names.count(c) for c in classes},
            "shards": shards,
            "records_sha256": sha256_file(tmp / RECORDS),
            "labels_sha256": sha256_file(tmp / LABELS),
            "provenance": (provenance() if callable(provenance) else provenance) or {},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        swap_in(tmp, out_dir)
        return out_dir
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_store_dir(out_dir: str | Path, force: bool = False, flag: str = "--out") -> Path:
    """Refuse to replace a folder that is not a patch store this tool wrote (unless ``force``)."""
    return check_dir(out_dir, marker=MANIFEST, names=(RECORDS, LABELS, "images-*.npy"), force=force, flag=flag)


def _flush(folder: Path, i: int, buf: list[np.ndarray]) -> dict[str, Any]:
    name = f"images-{i:05d}.npy"
    np.save(folder / name, np.stack(buf))
    return {"file": name, "count": len(buf), "sha256": sha256_file(folder / name)}


class PatchStore:
    """Read a store: ``images`` (uint8 N,H,W,3, memory-mapped shards joined on first access), ``labels``,
    ``classes``, ``records`` and ``manifest_hash`` (what MLflow logs to pin the data a run saw)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        mpath = self.root / MANIFEST
        if not mpath.is_file():
            raise DataError(f"no patch store at '{self.root}' ({MANIFEST} missing)", "build one with: histosynth data samples && histosynth data patches && histosynth data split (or dvc repro)")
        try:
            self.manifest = json.loads(mpath.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"'{mpath}' is not valid JSON: {e}", "rebuild the store (dvc repro or histosynth data patches)") from e
        if self.manifest.get("format") != FORMAT:
            raise DataError(f"'{mpath}' is not a {FORMAT} manifest")
        self.classes: list[str] = self.manifest["classes"]
        self.manifest_hash = hashlib.sha256(mpath.read_bytes()).hexdigest()
        self._images: np.ndarray | None = None
        self._labels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.manifest["count"])

    @property
    def patch_size(self) -> tuple[int, int]:
        return tuple(self.manifest["patch_size"])  # type: ignore[return-value]

    @property
    def labels(self) -> np.ndarray:
        if self._labels is None:
            self._labels = np.load(self.root / LABELS)
        return self._labels

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            parts = []
            for s in self.manifest["shards"]:
                f = self.root / s["file"]
                if not f.is_file():
                    raise DataError(f"shard '{f}' is missing", "run `dvc pull` (or rebuild with dvc repro)")
                parts.append(np.load(f, mmap_mode="r"))
            self._images = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return self._images

    @property
    def records(self) -> list[dict[str, Any]]:
        with open(self.root / RECORDS) as f:
            return [json.loads(line) for line in f]

    def verify(self) -> None:
        """Check every shard's sha256 against the manifest (catches partial copies and bit rot)."""
        for s in self.manifest["shards"]:
            f = self.root / s["file"]
            if not f.is_file() or sha256_file(f) != s["sha256"]:
                raise DataError(f"shard '{f}' is missing or does not match its checksum", "run `dvc pull` or `dvc repro` to restore it")
