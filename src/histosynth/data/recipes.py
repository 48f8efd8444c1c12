"""Recipes for public datasets that users bring: where to download, how to verify, how to lay out.

``fetch_dataset(name)`` downloads each file of a recipe into ``<cache>/datasets/<name>/`` (streaming,
resumable, checksummed: :mod:`histosynth.data.download`), then its adapter writes one of three layouts:

* ``folders``: ``<out>/<class>/<image>`` + ``SOURCES.json``, the input of ``histosynth data patches``;
* ``splits``: ``<out>/{train,val,test}`` patch stores + ``split_report.json`` (already-patched sets that
  ship their own split, e.g. MedMNIST), ready for training;
* ``store``: one patch store (already-patched sets without a split, e.g. PatchCamelyon), the input of
  ``histosynth data split``.

Checksums: a published sha256 is used when there is one; Zenodo publishes md5 (checked when known);
otherwise ``None``: the first download records its sha256 beside the file and warns, later runs verify
against that record. ``--sha256`` overrides the published checksum (a mirror or a re-packaged archive).

Recipes (URLs and checksums as published by the dataset owners; md5s as listed in the owners' record /
the MedMNIST ``INFO`` table):

* ``bach`` — ICIAR 2018 BACH microscopy photos (Zenodo 3632035, ~10.4 GB zip, CC BY-NC-ND 4.0): the
  ``Photos/{Normal,Benign,InSitu,Invasive}`` 2048x1536 TIFFs become 4 class folders (the WSI part has
  region annotations in XML, not class folders, and is not used).
* ``pcam`` — PatchCamelyon train split (Zenodo 2546921, 96x96 patches, CC0): HDF5, needs ``h5py``
  (not a histosynth dependency: ``pip install h5py``); slide ids come from the meta CSV ``wsi`` column so
  ``data split`` can group by slide. Only train is fetched: the valid/test files are reported to be
  swapped on Zenodo relative to the README checksums, and ``data split`` makes its own val/test anyway.
* ``nct-crc-he-100k`` — NCT-CRC-HE-100K (Zenodo 1214456, 100k 224x224 H&E tiles, 9 tissue classes,
  CC BY 4.0) as class folders; the ``BACK`` (background) class is left out since it holds no tissue.
  The tiles carry no patient ids, so ``data split`` can only group by tile.
* ``pathmnist`` / ``bloodmnist`` — MedMNIST+ 64x64 npz (Zenodo 10519652, CC BY 4.0) straight into
  ``splits`` with MedMNIST's own train/val/test.
* ``breast-cytology`` — Zenodo record 7890874 (breast cytology). Its file list is resolved through the
  Zenodo API at fetch time (names, md5) and cached; archives are read by the generic class-folder adapter
  (class = the folder holding the images). Not verified here (no network): pass ``--url`` if the record's
  layout differs.
* ``b-all`` — Acute Lymphoblastic Leukemia (B-ALL) blood smears, Kaggle ``mehradaria/leukemia`` (Aria et al.
  2021; classes Benign / Early Pre-B / Pre-B / Pro-B, 3256 images): Kaggle's download API may require a
  login; download the zip in a browser and pass ``--url file:///path/archive.zip``. The ``Original``
  folder is used (``Segmented`` is skipped). C-NMC 2019 (TCIA) archives work with the same adapter
  through ``--url`` (classes ``all`` / ``hem`` from its fold folders).
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np

from histosynth import defaults
from histosynth.data.download import download
from histosynth.data.slide import IMAGE_EXTS
from histosynth.data.split import REPORT, SPLITS, check_no_leakage
from histosynth.data.store import Patch, check_store_dir, write_store
from histosynth.errors import DataError
from histosynth.files.atomic import atomic_open, sha256_file, swap_in, temp_beside
from histosynth.files.outputs import check_dir, written_by_us

SOURCES_FILE = "SOURCES.json"


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    url: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None  # bytes, informational


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    homepage: str
    licence: str
    citation: str
    layout: str  # "folders" | "splits" | "store"
    adapter: str  # name in ADAPTERS
    files: tuple[RemoteFile, ...] = ()
    zenodo_record: int | None = None  # files resolved through the Zenodo API when ``files`` is empty
    options: dict[str, Any] = field(default_factory=dict)
    notes: str = ""


def sanitize(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "unnamed"


def _zenodo(record: int, name: str) -> str:
    return f"https://zenodo.org/records/{record}/files/{name}?download=1"


PATH_LABELS = ["adipose", "background", "debris", "lymphocytes", "mucus", "smooth_muscle", "normal_colon_mucosa", "cancer_associated_stroma", "colorectal_adenocarcinoma_epithelium"]
BLOOD_LABELS = ["basophil", "eosinophil", "erythroblast", "immature_granulocytes", "lymphocyte", "monocyte", "neutrophil", "platelet"]

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe(
            name="bach",
            title="BACH / ICIAR 2018 breast cancer histology (microscopy photos)",
            homepage="https://iciar2018-challenge.grand-challenge.org/",
            licence="CC BY-NC-ND 4.0",
            citation="Aresta et al., BACH: Grand challenge on breast cancer histology images, Medical Image Analysis 2019",
            layout="folders",
            adapter="class_folders",
            files=(RemoteFile("ICIAR2018_BACH_Challenge.zip", _zenodo(3632035, "ICIAR2018_BACH_Challenge.zip"), md5="8ae1801334aa943c44627c1eef3631b2", size=10_400_000_000),),
            options={"prefer": "Photos", "class_map": {"normal": "normal", "benign": "benign", "insitu": "in_situ", "invasive": "invasive"}},
        ),
        Recipe(
            name="pcam",
            title="PatchCamelyon (train split), 96x96 lymph node patches",
            homepage="https://github.com/basveeling/pcam",
            licence="CC0 1.0",
            citation="Veeling et al., Rotation Equivariant CNNs for Digital Pathology, MICCAI 2018",
            layout="store",
            adapter="pcam",
            files=(
                RemoteFile("camelyonpatch_level_2_split_train_x.h5.gz", _zenodo(2546921, "camelyonpatch_level_2_split_train_x.h5.gz"), md5="1571f514728f59376b705fc836ff4b63"),
                RemoteFile("camelyonpatch_level_2_split_train_y.h5.gz", _zenodo(2546921, "camelyonpatch_level_2_split_train_y.h5.gz"), md5="35c2d7259d906cfc8143347bb8e05be7"),
                RemoteFile("camelyonpatch_level_2_split_train_meta.csv", _zenodo(2546921, "camelyonpatch_level_2_split_train_meta.csv"), md5="5a3dd671e465cfd74b5b822125e65b0a"),
            ),
            options={"classes": ["normal", "tumour"]},
        ),
        Recipe(
            name="nct-crc-he-100k",
            title="NCT-CRC-HE-100K colorectal H&E tiles (224x224, 9 classes)",
            homepage="https://zenodo.org/records/1214456",
            licence="CC BY 4.0",
            citation="Kather et al., Predicting survival from colorectal cancer histology slides using deep learning, PLoS Med 2019",
            layout="folders",
            adapter="class_folders",
            files=(RemoteFile("NCT-CRC-HE-100K.zip", _zenodo(1214456, "NCT-CRC-HE-100K.zip"), md5="035777cf327776a71a05c95da6d6325f"),),
            options={"prefer": "NCT-CRC-HE-100K", "exclude": ["back"]},
        ),
        Recipe(
            name="pathmnist",
            title="MedMNIST+ PathMNIST 64x64 (NCT-CRC-HE-100K / CRC-VAL-HE-7K resized)",
            homepage="https://medmnist.com/",
            licence="CC BY 4.0",
            citation="Yang et al., MedMNIST v2, Scientific Data 2023",
            layout="splits",
            adapter="medmnist",
            files=(RemoteFile("pathmnist_64.npz", _zenodo(10519652, "pathmnist_64.npz"), md5="55aa9c1e0525abe5a6b9d8343a507616"),),
            options={"labels": PATH_LABELS},
        ),
        Recipe(
            name="bloodmnist",
            title="MedMNIST+ BloodMNIST 64x64 (blood cell microscopy, 8 classes)",
            homepage="https://medmnist.com/",
            licence="CC BY 4.0",
            citation="Yang et al., MedMNIST v2, Scientific Data 2023; Acevedo et al., Data in Brief 2020",
            layout="splits",
            adapter="medmnist",
            files=(RemoteFile("bloodmnist_64.npz", _zenodo(10519652, "bloodmnist_64.npz"), md5="2b94928a2ae4916078ca51e05b6b800b"),),
            options={"labels": BLOOD_LABELS},
        ),
        Recipe(
            name="breast-cytology",
            title="Breast cytology images (Zenodo record 7890874)",
            homepage="https://zenodo.org/records/7890874",
            licence="as stated on the Zenodo record",
            citation="see https://doi.org/10.5281/zenodo.7890874",
            layout="folders",
            adapter="class_folders",
            zenodo_record=7890874,
        ),
        Recipe(
            name="b-all",
            title="Acute Lymphoblastic Leukemia (B-ALL) peripheral blood smears, 4 classes",
            homepage="https://www.kaggle.com/datasets/mehradaria/leukemia",
            licence="as stated on the Kaggle page (check before redistribution)",
            citation="Aria et al., Acute Lymphoblastic Leukemia (ALL) image dataset, Kaggle/Mendeley Data 2021",
            layout="folders",
            adapter="class_folders",
            files=(RemoteFile("leukemia.zip", "https://www.kaggle.com/api/v1/datasets/download/mehradaria/leukemia"),),
            options={"prefer": "Original", "class_map": {"benign": "benign", "early": "early_pre_b", "pre": "pre_b", "pro": "pro_b"}},
        ),
    ]
}


def list_recipes() -> list[Recipe]:
    return [RECIPES[k] for k in sorted(RECIPES)]


def get_recipe(name: str) -> Recipe:
    key = name.strip().lower()
    if key not in RECIPES:
        raise DataError(f"unknown dataset '{name}'", f"use one of: {', '.join(sorted(RECIPES))} (list them with `histosynth data recipes`)")
    return RECIPES[key]


def recipe_cache(name: str) -> Path:
    return defaults.paths().cache / "datasets" / name


def default_out(name: str) -> Path:
    return defaults.paths().data / "external" / name


# --------------------------------------------------------------------------------------------- file lists


def _zenodo_files(recipe: Recipe, cache: Path) -> tuple[RemoteFile, ...]:
    listing = cache / f"zenodo-{recipe.zenodo_record}.json"
    if not listing.is_file():
        api = f"https://zenodo.org/api/records/{recipe.zenodo_record}"
        if defaults.offline():
            raise DataError(f"offline (HISTOSYNTH_OFFLINE=1) and the file list of Zenodo record {recipe.zenodo_record} is not cached", f"pass --url file:///path/to/the/archive (download it from {recipe.homepage})")
        try:
            with urllib.request.urlopen(urllib.request.Request(api, headers={"Accept": "application/json"}), timeout=60) as r:
                data = json.loads(r.read())
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as e:
            raise DataError(f"cannot list the files of Zenodo record {recipe.zenodo_record} ({api}): {e}", f"check the network, or download the archive from {recipe.homepage} and pass --url file:///path/to/it") from e
        cache.mkdir(parents=True, exist_ok=True)
        listing.write_text(json.dumps(data.get("files", []), indent=1))
    files = []
    for f in json.loads(listing.read_text()):
        key = f.get("key") or f.get("filename")
        checksum = f.get("checksum", "")
        md5 = checksum.split(":", 1)[1] if checksum.startswith("md5:") else None
        url = (f.get("links") or {}).get("self") or _zenodo(int(recipe.zenodo_record), key)
        files.append(RemoteFile(key, url, md5=md5, size=f.get("size")))
    if not files:
        raise DataError(f"Zenodo record {recipe.zenodo_record} lists no files", f"download the archive from {recipe.homepage} and pass --url file:///path/to/it")
    return tuple(files)


def _as_list(v: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if v is None:
        return []
    return [v] if isinstance(v, str) else [x for x in v if x]


def resolve_files(recipe: Recipe, url: str | list[str] | None = None, sha256: str | list[str] | None = None, *, progress: bool = True) -> list[RemoteFile]:
    """The files to download: the recipe's, with ``--url`` / ``--sha256`` overrides applied in order."""
    urls, shas = _as_list(url), _as_list(sha256)
    cache = recipe_cache(recipe.name)
    if urls and (recipe.zenodo_record and not recipe.files):
        files = [RemoteFile(PurePosixPath(urllib.parse.urlparse(u).path).name or f"{recipe.name}-{i}", u) for i, u in enumerate(urls)]
    else:
        files = list(recipe.files) if recipe.files else list(_zenodo_files(recipe, cache))
        if urls:
            if len(urls) != len(files):
                raise DataError(
                    f"{recipe.name} has {len(files)} file(s) but {len(urls)} --url given",
                    "pass --url once per file, in this order: " + ", ".join(f.filename for f in files),
                )
            files = [RemoteFile(f.filename, u, f.sha256, f.md5, f.size) for f, u in zip(files, urls)]
    if shas:
        if len(shas) != len(files):
            raise DataError(f"{recipe.name} has {len(files)} file(s) but {len(shas)} --sha256 given", "pass --sha256 once per file, in the order of the files")
        files = [RemoteFile(f.filename, f.url, s.lower(), None, f.size) for f, s in zip(files, shas)]
    return files


# --------------------------------------------------------------------------------------------- adapters


def _iter_archive(path: Path) -> Iterator[tuple[str, Callable[[], IO[bytes]]]]:
    """(member name, opener) of the regular files in a zip or tar archive, or in a folder."""
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                yield p.relative_to(path).as_posix(), (lambda p=p: open(p, "rb"))
        return
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.is_dir():
                    yield info.filename, (lambda info=info, z=z: z.open(info))
        return
    try:
        with tarfile.open(path, "r:*") as t:
            for m in t:
                if m.isfile():
                    yield m.name, (lambda m=m, t=t: t.extractfile(m))
        return
    except tarfile.TarError:
        pass
    raise DataError(f"'{path}' is neither a zip nor a tar archive", "check the file is the dataset archive (a truncated download? delete it and rerun)")


def _check_out(layout: str, out: Path, force: bool) -> None:
    """Refuse, before any download, an ``out`` this tool did not write (see histosynth.files.outputs)."""
    if layout == "store":
        check_store_dir(out, force)
    elif layout == "splits":
        check_dir(out, marker=REPORT, names=SPLITS, force=force)
    else:
        marker = out / SOURCES_FILE
        classes = json.loads(marker.read_text()).get("classes", []) if written_by_us(marker) else []
        check_dir(out, marker=SOURCES_FILE, names=classes, force=force)


def adapt_class_folders(recipe: Recipe, archives: list[Path], out: Path, *, prefer: str | None = None, class_map: dict[str, str] | None = None, exclude: list[str] | None = None, **_: Any) -> dict[str, Any]:
    """Archive(s) -> ``<out>/<class>/<image>``: the class is the folder holding each image (below the
    ``prefer`` folder when given), renamed through ``class_map`` (keys: sanitized folder names)."""
    class_map = {sanitize(k): v for k, v in (class_map or {}).items()}
    excluded = {sanitize(e) for e in (exclude or [])}
    tmp = temp_beside(out)
    counts: dict[str, int] = {}
    used: dict[str, set[str]] = {}
    skipped_classes: dict[str, int] = {}
    try:
        for archive in archives:
            for name, opener in _iter_archive(archive):
                parts = PurePosixPath(name).parts
                if any(p.startswith(".") or p == "__MACOSX" for p in parts) or PurePosixPath(name).suffix.lower() not in IMAGE_EXTS:
                    continue
                if prefer:
                    hits = [i for i, p in enumerate(parts) if p.lower() == prefer.lower()]
                    if not hits or len(parts) - hits[0] < 3:
                        continue
                if len(parts) < 2:
                    continue
                folder = sanitize(parts[-2])
                cls = sanitize(class_map.get(folder, folder))
                if folder in excluded or cls in excluded:
                    skipped_classes[cls] = skipped_classes.get(cls, 0) + 1
                    continue
                base = sanitize(PurePosixPath(parts[-1]).stem) + PurePosixPath(parts[-1]).suffix.lower()
                names = used.setdefault(cls, set())
                if base in names:  # same file name in two folders (folds, patients): keep the path in the name
                    base = sanitize("_".join(parts[:-1])) + "__" + base
                names.add(base)
                target = tmp / cls / base
                target.parent.mkdir(parents=True, exist_ok=True)
                with opener() as fsrc, open(target, "wb") as fdst:
                    shutil.copyfileobj(fsrc, fdst, 1 << 20)
                counts[cls] = counts.get(cls, 0) + 1
        if not counts:
            where = f" under a '{prefer}' folder" if prefer else ""
            raise DataError(
                f"no images in class folders{where} found in {', '.join(a.name for a in archives)}",
                "check the archive is this dataset's (layout <...>/<class>/<image>), or pass --url to the right file",
            )
        sources = {
            "format": "histosynth.recipe-sources/1",
            "recipe": recipe.name,
            "title": recipe.title,
            "homepage": recipe.homepage,
            "licence": recipe.licence,
            "citation": recipe.citation,
            "archives": [{"file": a.name, "sha256": sha256_file(a) if a.is_file() else None, "bytes": a.stat().st_size if a.is_file() else None} for a in archives],
            "classes": sorted(counts),
            "counts": dict(sorted(counts.items())),
            "excluded_classes": skipped_classes,
        }
        (tmp / SOURCES_FILE).write_text(json.dumps(sources, indent=2, sort_keys=True) + "\n")
        swap_in(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {"classes": sorted(counts), "counts": dict(sorted(counts.items())), "excluded_classes": skipped_classes}


def _rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr.astype(np.uint8, copy=False))


def adapt_medmnist(recipe: Recipe, archives: list[Path], out: Path, *, labels: list[str], **_: Any) -> dict[str, Any]:
    """MedMNIST npz (``{train,val,test}_{images,labels}``) -> ``<out>/{train,val,test}`` stores + report."""
    path = archives[0]
    try:
        npz = np.load(path)
    except (OSError, ValueError) as e:
        raise DataError(f"'{path}' is not a readable npz: {e}", "delete it and rerun the fetch (truncated download?)") from e
    need = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels")]
    missing = [k for k in need if k not in npz.files]
    if missing:
        raise DataError(f"'{path}' is not a MedMNIST npz: keys {missing} missing (has {npz.files})", "pass --url to the MedMNIST .npz file")
    classes = [sanitize(c) for c in labels]
    tmp = temp_beside(out)
    counts: dict[str, dict[str, int]] = {}
    try:
        for split in SPLITS:
            images = npz[f"{split}_images"]
            ys = np.asarray(npz[f"{split}_labels"]).reshape(len(images), -1)[:, 0].astype(np.int64)
            if images.ndim not in (3, 4) or len(images) != len(ys):
                raise DataError(f"'{path}' {split}_images has shape {images.shape} for {len(ys)} labels", "pass --url to a MedMNIST 2D .npz file")
            if ys.min(initial=0) < 0 or ys.max(initial=0) >= len(classes):
                raise DataError(f"'{path}' {split}_labels go up to {ys.max()} but the recipe knows {len(classes)} classes", "use the matching recipe (pathmnist/bloodmnist)")

            def gen(images=images, ys=ys, split=split):
                for i in range(len(images)):
                    yield Patch(image=_rgb(images[i]), label=classes[ys[i]], record={"source": path.name, "slide": f"{split}-{i}", "region": 0, "x": 0, "y": 0, "level": 0, "index": i})

            write_store(tmp / split, gen(), classes=classes, provenance={"stage": "fetch", "recipe": recipe.name, "split": split, "archive": path.name, "archive_sha256": sha256_file(path)})
            counts[split] = {c: int((ys == i).sum()) for i, c in enumerate(classes)}
        report = {
            "format": "histosynth.split/1",
            "src": path.name,
            "recipe": recipe.name,
            "seed": None,
            "fractions": None,
            "classes": classes,
            "grouping": {c: "predefined" for c in classes},
            "counts": counts,
            "totals": {s: sum(counts[s].values()) for s in SPLITS},
            "note": "MedMNIST's own split (no slide/patient ids are published)",
        }
        (tmp / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        check_no_leakage(tmp)
        swap_in(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {"classes": classes, "counts": counts}


def _gunzip(src: Path) -> Path:
    dst = src.with_suffix("") if src.suffix == ".gz" else src
    if dst == src or dst.is_file():
        return dst
    with gzip.open(src, "rb") as fi, atomic_open(dst) as fo:
        shutil.copyfileobj(fi, fo, 1 << 20)
    return dst


def adapt_pcam(recipe: Recipe, archives: list[Path], out: Path, *, classes: list[str], force: bool = False, **_: Any) -> dict[str, Any]:
    """PatchCamelyon HDF5 (x: N,96,96,3 uint8; y: N,1,1,1) + meta CSV -> one store, slide = meta ``wsi``."""
    try:
        import h5py
    except ImportError as e:
        raise DataError("PatchCamelyon is stored as HDF5 and h5py is not installed", "pip install h5py, then rerun `histosynth data fetch pcam` (the download is cached)") from e
    x_path, y_path = _gunzip(archives[0]), _gunzip(archives[1])
    slides: list[str] = []
    if len(archives) > 2 and archives[2].is_file():
        with open(archives[2], newline="") as f:
            slides = [row.get("wsi", "") for row in csv.DictReader(f)]
    with h5py.File(x_path, "r") as fx, h5py.File(y_path, "r") as fy:
        X, Y = fx["x"], fy["y"]
        n = len(X)
        if len(Y) != n:
            raise DataError(f"PCam x has {n} patches but y has {len(Y)}", "delete the cached files and rerun the fetch")
        ys = np.asarray(Y).reshape(n, -1)[:, 0].astype(np.int64)

        def gen():
            chunk = 4096
            for s in range(0, n, chunk):
                block = np.asarray(X[s : s + chunk])
                for j in range(len(block)):
                    i = s + j
                    slide = slides[i] if i < len(slides) and slides[i] else f"pcam-{i}"
                    yield Patch(image=block[j], label=classes[ys[i]], record={"source": x_path.name, "slide": slide, "region": 0, "x": 0, "y": 0, "level": 0, "index": i})

        write_store(out, gen(), classes=classes, provenance={"stage": "fetch", "recipe": recipe.name, "archives": [a.name for a in archives]}, force=force)
    return {"classes": classes, "counts": {c: int((ys == i).sum()) for i, c in enumerate(classes)}}


ADAPTERS: dict[str, Callable[..., dict[str, Any]]] = {
    "class_folders": adapt_class_folders,
    "medmnist": adapt_medmnist,
    "pcam": adapt_pcam,
}


# --------------------------------------------------------------------------------------------- fetch


def fetch_dataset(
    name: str,
    url: str | list[str] | None = None,
    sha256: str | list[str] | None = None,
    out: str | Path | None = None,
    *,
    progress: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """``histosynth data fetch NAME``: download (cached, verified) and lay out one public dataset (an ``out``
    folder this tool did not write is replaced only with ``force``).

    Returns: recipe, layout, out, archives (file, sha256, seconds, cached), classes, counts, next (the
    command to run next).
    """
    t0 = time.perf_counter()
    recipe = get_recipe(name)
    out = Path(out) if out else default_out(recipe.name)
    _check_out(recipe.layout, out, force)
    files = resolve_files(recipe, url, sha256, progress=progress)
    cache = recipe_cache(recipe.name)
    archives: list[Path] = []
    fetched: list[dict[str, Any]] = []
    for f in files:
        dest = cache / f.filename
        hit = dest.is_file()
        t = time.perf_counter()
        path = download(f.url, dest, sha256=f.sha256, md5=f.md5, progress=progress)
        archives.append(path)
        fetched.append({"file": f.filename, "url": f.url, "bytes": path.stat().st_size, "seconds": round(time.perf_counter() - t, 2), "was_cached": hit})
    summary = ADAPTERS[recipe.adapter](recipe, archives, out, force=force, **recipe.options)
    data = defaults.paths().data
    nxt = {
        "folders": f"histosynth data patches --src {out} --out {data / (recipe.name + '-patches')} && histosynth data split --src {data / (recipe.name + '-patches')} --out {data / (recipe.name + '-splits')}",
        "store": f"histosynth data split --src {out} --out {data / (recipe.name + '-splits')}",
        "splits": f"histosynth train --set data.root={out}",
    }[recipe.layout]
    return {"recipe": recipe.name, "layout": recipe.layout, "out": str(out), "archives": fetched, **summary, "next": nxt, "seconds": round(time.perf_counter() - t0, 2)}


__all__ = ["RECIPES", "Recipe", "RemoteFile", "fetch_dataset", "get_recipe", "list_recipes", "recipe_cache", "resolve_files"]
