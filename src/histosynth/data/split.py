"""Leakage-free train/val/test splits of a patch store.

Patches are assigned in **groups** that never straddle two splits: per class, by ``slide`` when the class has
at least ``MIN_SLIDES_FOR_SLIDE_GROUPS`` (3) slides, else by ``(slide, region)`` — the region grid of
``data patches`` guarantees patches of different regions do not overlap. Groups of a class are shuffled with
the seed; the first goes to train (every class is trained on), then, when a class has >= 3 groups, one each
to test and val, and every further group to the split furthest below its target share of that class's
patches. A group already placed by an earlier class (a slide holding patches of several classes, as in
PatchCamelyon) keeps its split. The output is deterministic for a given store and seed.

Output::

    <out>/train, <out>/val, <out>/test    patch stores (same class list, so label ids agree)
    <out>/split_report.json               seed, fractions, grouping per class, counts and groups per split

The whole folder is built beside ``out`` and swapped in at the end, so a failed run leaves the old one.
Region grouping keeps neighbouring regions of one slide on different sides: fine for GAN training data,
weaker than patient-level separation (which needs the slide/patient ids a real dataset provides).
"""

from __future__ import annotations

import json
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from histosynth.data.store import MANIFEST, Patch, PatchStore, write_store
from histosynth.errors import DataError
from histosynth.files.atomic import swap_in, temp_beside
from histosynth.files.outputs import check_dir

SPLITS = ("train", "val", "test")
REPORT = "split_report.json"
MIN_SLIDES_FOR_SLIDE_GROUPS = 3
FORMAT = "histosynth.split/1"


def group_key(record: dict[str, Any], by: str) -> str:
    slide = str(record.get("slide", record.get("source", "?")))
    return slide if by == "slide" else f"{slide}#r{record.get('region', 0)}"


def assign_groups(
    records: list[dict[str, Any]], labels: np.ndarray, classes: list[str], val: float, test: float, seed: int
) -> tuple[np.ndarray, dict[str, str], dict[str, dict[str, str]]]:
    """Split index per patch (0 train, 1 val, 2 test), grouping mode per class, group -> split per class."""
    rng = np.random.default_rng(seed)
    target = {"train": 1.0 - val - test, "val": val, "test": test}
    split_of = np.zeros(len(records), dtype=np.int8)
    grouping: dict[str, str] = {}
    assignment: dict[str, dict[str, str]] = {}
    assigned: dict[str, str] = {}  # group key -> split, across classes (a slide may hold several classes)
    for ci, cls in enumerate(classes):
        idx = np.flatnonzero(labels == ci)
        if idx.size == 0:
            continue
        slides = {str(records[i].get("slide", records[i].get("source"))) for i in idx}
        by = "slide" if len(slides) >= MIN_SLIDES_FOR_SLIDE_GROUPS else "slide+region"
        grouping[cls] = by
        members: dict[str, list[int]] = defaultdict(list)
        for i in idx:
            members[group_key(records[i], by)].append(int(i))
        keys = sorted(members)
        order = [keys[j] for j in rng.permutation(len(keys))]
        n = idx.size
        count = {s: 0 for s in SPLITS}
        chosen: dict[str, str] = {}
        for key in order:  # groups already placed by an earlier class keep their split
            if key in assigned:
                count[assigned[key]] += len(members[key])
        n_fresh = sum(1 for key in order if key not in assigned)
        seeded = [] if count["train"] else ["train"]
        if n_fresh >= 3:
            seeded += [s for s in ("test", "val") if target[s] > 0 and count[s] == 0]
        k = 0
        for key in order:
            if key in assigned:
                s = assigned[key]
            else:
                if k < len(seeded):
                    s = seeded[k]
                else:
                    s = max(SPLITS, key=lambda t: (target[t] * n - count[t], -SPLITS.index(t)) if target[t] > 0 else (-np.inf, 0))
                k += 1
                count[s] += len(members[key])
                assigned[key] = s
            chosen[key] = s
            split_of[members[key]] = SPLITS.index(s)
        assignment[cls] = chosen
    return split_of, grouping, assignment


def check_no_leakage(out: str | Path) -> dict[str, Any]:
    """Re-read the split stores and verify no group (and, for slide grouping, no slide) is in two splits and
    every class is in train. Raises DataError; returns a summary of what was checked."""
    out = Path(out)
    report = json.loads((out / REPORT).read_text())
    grouping = report["grouping"]
    seen_group: dict[str, str] = {}
    seen_slide: dict[str, str] = {}
    train_classes: set[str] = set()
    n = 0
    for split in SPLITS:
        if not (out / split / MANIFEST).is_file():
            continue
        for rec in PatchStore(out / split).records:
            n += 1
            cls = rec["class"]
            if split == "train":
                train_classes.add(cls)
            by = grouping.get(cls, "slide+region")
            g = group_key(rec, by)
            if seen_group.setdefault(g, split) != split:
                raise DataError(f"split leakage: group {g} is in both {seen_group[g]} and {split}", "rebuild the splits with `histosynth data split`")
            if by == "slide":
                sl = str(rec.get("slide"))
                if seen_slide.setdefault(sl, split) != split:
                    raise DataError(f"split leakage: slide {sl} is in both {seen_slide[sl]} and {split}", "rebuild the splits with `histosynth data split`")
    missing = sorted(set(report["classes"]) - train_classes)
    if missing:
        raise DataError(f"classes {missing} have no training patches", "each class needs at least one slide/region; add data for it")
    return {"patches": n, "groups": len(seen_group)}


def split_store(
    src: str | Path,
    out: str | Path,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
    *,
    progress: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """``histosynth data split``: write train/val/test stores and split_report.json under ``out`` (atomic;
    a folder this tool did not write is replaced only with ``force``)."""
    t0 = time.perf_counter()
    src, out = Path(src), Path(out)
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise DataError(f"val={val} and test={test} must be fractions in [0, 1) summing to < 1", "e.g. --val 0.15 --test 0.15")
    check_dir(out, marker=REPORT, names=SPLITS, force=force)
    store = PatchStore(src)
    records = store.records
    labels = store.labels
    if len(records) != len(labels) or len(labels) != len(store):
        raise DataError(f"store '{src}' is inconsistent: {len(records)} records, {len(labels)} labels, {len(store)} patches", "rebuild it with `histosynth data patches`")
    classes = store.classes
    split_of, grouping, assignment = assign_groups(records, labels, classes, val, test, seed)
    fractions = {"train": 1.0 - val - test, "val": val, "test": test}

    counts = {s: {c: 0 for c in classes} for s in SPLITS}
    groups = {s: {c: 0 for c in classes} for s in SPLITS}
    for i, s in enumerate(split_of):
        counts[SPLITS[s]][classes[labels[i]]] += 1
    for cls, chosen in assignment.items():
        for s in chosen.values():
            groups[s][cls] += 1
    for s in SPLITS:
        if fractions[s] > 0 and sum(counts[s].values()) == 0:
            raise DataError(
                f"split '{s}' would be empty: {src} has too few slides/regions ({sum(len(a) for a in assignment.values())} groups) for val={val}, test={test}",
                "add data, use a smaller --region in `data patches` (more groups), or pass --val 0 / --test 0",
            )

    tmp = temp_beside(out)
    try:
        images = store.images
        from tqdm import tqdm

        for si, s in enumerate(SPLITS):
            idx = np.flatnonzero(split_of == si)
            if idx.size == 0:
                continue

            def gen(idx: np.ndarray = idx):
                for i in tqdm(idx, desc=f"split {SPLITS[si]}", disable=not progress, leave=False):
                    rec = {k: v for k, v in records[i].items() if k != "class"}
                    rec["src_index"] = int(i)
                    yield Patch(image=np.array(images[i]), label=classes[labels[i]], record=rec)

            write_store(tmp / s, gen(), classes=classes, provenance={"stage": "split", "split": s, "src": src.name, "src_manifest_sha256": store.manifest_hash, "seed": seed, "val": val, "test": test})
        report = {
            "format": FORMAT,
            "src": src.name,
            "src_manifest_sha256": store.manifest_hash,
            "seed": seed,
            "fractions": fractions,
            "classes": classes,
            "grouping": grouping,
            "min_slides_for_slide_grouping": MIN_SLIDES_FOR_SLIDE_GROUPS,
            "counts": counts,
            "totals": {s: sum(counts[s].values()) for s in SPLITS},
            "groups": groups,
        }
        (tmp / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        report["leakage_check"] = check_no_leakage(tmp)
        (tmp / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        swap_in(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    report["out"] = str(out)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return report
