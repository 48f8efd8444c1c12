"""Labelled image pairs for the MFT-SNN, built from the versioned split stores (DVC stage ``pairs``).

Three levels, every side of every pair augmented independently (brightness, contrast, Gaussian noise), so
augmentation alone never gives the label away:

====== ========= ===================================================================================
level  label     pair
====== ========= ===================================================================================
0      1 similar the same image, two augmentations
1      0         another image of the same slide (within-slide); same class elsewhere if the slide has one
2      0         an image of another slide (across slides / sources)
====== ========= ===================================================================================

Pairs are built per split from that split's images only, so held-out pairs never touch training patches
(the splits are leakage-free by slide/region). Two kinds per split: ``patch`` pairs (stage 2, single-stage,
evaluation) and ``stage1`` pairs over "whole images": mosaics of a split's patches stitched back in place per
region (or per slide), resized to ``mosaic_size`` — the sample data has few whole images, and stitching keeps
stage 1 inside the split. Output (deterministic for a store and seed, byte for byte)::

    <out>/manifest.json                  config, source store hashes, counts per level, file sha256
    <out>/<split>/patch.npy              structured pairs (a, b, label, level, aug_a, aug_b, seed_a, seed_b)
    <out>/<split>/stage1.npy             the same over mosaics
    <out>/<split>/mosaics.npy            uint8 (M, S, S, 3); mosaics.jsonl: slide, class, region, tiles

Pairs store indices and augmentation parameters, not images: patch pairs index the split store, which the
manifest pins by its manifest hash.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from histosynth.data.store import PatchStore
from histosynth.files.atomic import sha256_file, swap_in, temp_beside
from histosynth.errors import DataError
from histosynth.config.snn import PairsConfig
from histosynth.files.outputs import check_dir
from histosynth.data.loader import open_store, resolve_data_root

FORMAT = "histosynth.pairs/1"
MANIFEST = "manifest.json"
KINDS = ("patch", "stage1")
LEVELS = {0: "similar", 1: "dissimilar-within-slide", 2: "dissimilar-across-slides"}
PAIR_DTYPE = np.dtype(
    [("a", "<i4"), ("b", "<i4"), ("label", "u1"), ("level", "u1"), ("aug_a", "<f4", (3,)), ("aug_b", "<f4", (3,)), ("seed_a", "<u4"), ("seed_b", "<u4")]
)


def make_pairs(slides: list[str], classes: list[str], per_item: int, rng: np.random.Generator) -> np.ndarray:
    """Index pairs (a, b, label, level) for items described by their slide and class; see the module table."""
    n = len(slides)
    if n < 2:
        raise DataError(f"{n} image(s) are too few to build dissimilar pairs", "build pairs from a split with at least 2 patches")
    slides_a, classes_a = np.asarray(slides), np.asarray(classes)
    by_slide: dict[str, np.ndarray] = {s: np.flatnonzero(slides_a == s) for s in sorted(set(slides))}
    by_class: dict[str, np.ndarray] = {c: np.flatnonzero(classes_a == c) for c in sorted(set(classes))}
    rows: list[tuple[int, int, int, int]] = []
    for i in range(n):
        same_slide = by_slide[slides[i]]
        same_class_other = np.setdiff1d(by_class[classes[i]], same_slide, assume_unique=True)
        other_slide = np.flatnonzero(slides_a != slides[i])
        for _ in range(per_item):
            rows.append((i, i, 1, 0))
            if len(same_slide) > 1:
                pool = same_slide
            elif len(same_class_other):
                pool = same_class_other
            else:
                pool = np.arange(n)
            j = i
            while j == i:
                j = int(pool[rng.integers(len(pool))])
            rows.append((i, j, 0, 1))
            pool2 = other_slide if len(other_slide) else np.setdiff1d(np.arange(n), [i])
            rows.append((i, int(pool2[rng.integers(len(pool2))]), 0, 2))
    return np.array(rows, dtype=np.int64)


def draw_augment(n: int, cfg: PairsConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) float32 [brightness shift, contrast factor, noise sigma] and (n,) uint32 noise seeds."""
    params = np.stack(
        [rng.uniform(-cfg.brightness, cfg.brightness, n), rng.uniform(1 - cfg.contrast, 1 + cfg.contrast, n), rng.uniform(0.0, cfg.noise, n)], axis=1
    ).astype(np.float32)
    return params, rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)


def pair_table(idx: np.ndarray, cfg: PairsConfig, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(len(idx), dtype=PAIR_DTYPE)
    out["a"], out["b"], out["label"], out["level"] = idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]
    out["aug_a"], out["seed_a"] = draw_augment(len(idx), cfg, rng)
    out["aug_b"], out["seed_b"] = draw_augment(len(idx), cfg, rng)
    return out


def augment(x: torch.Tensor, params: torch.Tensor, seeds: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Images in [-1, 1] (N, 3, H, W): contrast around each image's mean, brightness shift, seeded noise; clamped."""
    p = params.to(x.device, x.dtype)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    y = (x - mean) * p[:, 1].view(-1, 1, 1, 1) + mean + p[:, 0].view(-1, 1, 1, 1)
    noise = torch.stack([torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(int(s))) for s in np.asarray(seeds)])
    return (y + noise.to(x.device, x.dtype) * p[:, 2].view(-1, 1, 1, 1)).clamp_(-1.0, 1.0)


def to_model_input(images_uint8_nhwc: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, size, size) in [-1, 1] on ``device`` (antialiased resize)."""
    x = images_uint8_nhwc.to(device).permute(0, 3, 1, 2).float().mul_(1.0 / 127.5).sub_(1.0)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp_(-1.0, 1.0)
    return x.contiguous()


def build_mosaics(store: PatchStore, unit: str, size: int, min_tiles: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Stitch a split's patches back in place per (slide, region) or per slide; white where no patch was kept."""
    records = store.records
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        key = (r.get("slide", r.get("source", "?")),) + ((r.get("region", 0),) if unit == "region" else ())
        groups[key].append(i)
    ph, pw = store.patch_size
    images = store.images
    mosaics, meta = [], []
    for key in sorted(groups, key=lambda k: tuple(str(v) for v in k)):
        idx = groups[key]
        if len(idx) < min_tiles:
            continue
        xs = [int(records[i].get("x", 0)) for i in idx]
        ys = [int(records[i].get("y", 0)) for i in idx]
        x0, y0 = min(xs), min(ys)
        canvas = np.full((max(ys) - y0 + ph, max(xs) - x0 + pw, 3), 255, dtype=np.uint8)
        for i, x, y in zip(idx, xs, ys):
            canvas[y - y0 : y - y0 + ph, x - x0 : x - x0 + pw] = images[i]
        t = torch.from_numpy(canvas).permute(2, 0, 1)[None].float()
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        mosaics.append(t[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy())
        r0 = records[idx[0]]
        meta.append({"slide": key[0], "class": r0.get("class", ""), "region": key[1] if unit == "region" else None, "tiles": len(idx), "extent": [canvas.shape[1], canvas.shape[0]]})
    if not mosaics:
        return np.zeros((0, size, size, 3), np.uint8), []
    return np.stack(mosaics), meta


def build_pairs(cfg: PairsConfig, root: str | None = None, out: str | None = None, progress: bool = False, force: bool = False) -> dict[str, Any]:
    """Write the pairs folder for ``cfg.splits`` of the split stores at ``root`` (atomically; a folder this
    tool did not write is replaced only with ``force``); -> manifest."""
    src = resolve_data_root(root or cfg.root)
    dest = resolve_data_root(out or cfg.out)
    check_dir(dest, marker=MANIFEST, names=("train", "val", "test", *cfg.splits), force=force)
    tmp = temp_beside(dest)
    manifest: dict[str, Any] = {"format": FORMAT, "config": asdict(cfg), "levels": {str(k): v for k, v in LEVELS.items()}, "splits": {}}
    try:
        for s_i, split in enumerate(cfg.splits):
            store = open_store(str(src), split)
            records = store.records
            (tmp / split).mkdir()
            entry: dict[str, Any] = {"store": split, "store_manifest_hash": store.manifest_hash, "patches": len(store), "classes": store.classes}
            rng = np.random.default_rng([cfg.seed, s_i, 0])
            slides = [str(r.get("slide", r.get("source", "?"))) for r in records]
            classes = [str(r.get("class", "")) for r in records]
            table = pair_table(make_pairs(slides, classes, cfg.per_item, rng), cfg, rng)
            np.save(tmp / split / "patch.npy", table)
            entry["patch"] = _summary(table, tmp / split / "patch.npy")
            mosaics, meta = build_mosaics(store, cfg.stage1_unit, cfg.mosaic_size, cfg.min_tiles)
            np.save(tmp / split / "mosaics.npy", mosaics)
            (tmp / split / "mosaics.jsonl").write_text("".join(json.dumps(m, sort_keys=True) + "\n" for m in meta))
            entry["mosaics"] = {"count": len(mosaics), "unit": cfg.stage1_unit, "size": cfg.mosaic_size, "sha256": sha256_file(tmp / split / "mosaics.npy")}
            if len(mosaics) >= 2 and cfg.stage1_per_item > 0:
                rng1 = np.random.default_rng([cfg.seed, s_i, 1])
                t1 = pair_table(make_pairs([m["slide"] for m in meta], [m["class"] for m in meta], cfg.stage1_per_item, rng1), cfg, rng1)
            else:
                t1 = np.zeros(0, dtype=PAIR_DTYPE)
            np.save(tmp / split / "stage1.npy", t1)
            entry["stage1"] = _summary(t1, tmp / split / "stage1.npy")
            manifest["splits"][split] = entry
            if progress:
                print(f"  {split}: {entry['patch']['count']} patch pairs, {len(mosaics)} mosaics, {entry['stage1']['count']} stage-1 pairs")
        manifest["splits_root"] = str(root or cfg.root)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        swap_in(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _summary(table: np.ndarray, path: Path) -> dict[str, Any]:
    levels = {LEVELS[k]: int((table["level"] == k).sum()) for k in LEVELS}
    return {"count": int(len(table)), "levels": levels, "sha256": sha256_file(path)}


def read_manifest(pairs_dir: str | Path) -> dict[str, Any]:
    path = resolve_data_root(str(pairs_dir)) / MANIFEST
    if not path.is_file():
        raise DataError(f"no pairs at '{path.parent}' ({MANIFEST} missing)", "build them with `histosynth snn pairs` (or `dvc repro pairs`)")
    m = json.loads(path.read_text())
    if m.get("format") != FORMAT:
        raise DataError(f"'{path}' is not a {FORMAT} manifest", "rebuild with `histosynth snn pairs`")
    return m


class PairSet:
    """Pairs of one split and kind, with the images they index, served as augmented float batches."""

    def __init__(self, pairs_dir: str | Path, split: str, kind: str = "patch", splits_root: str = ""):
        if kind not in KINDS:
            raise DataError(f"unknown pair kind '{kind}'", f"use one of {KINDS}")
        self.dir = resolve_data_root(str(pairs_dir))
        self.manifest = read_manifest(pairs_dir)
        if split not in self.manifest["splits"]:
            raise DataError(f"the pairs at '{self.dir}' have no split '{split}' (they have {sorted(self.manifest['splits'])})", "rebuild with pairs.splits including it")
        entry = self.manifest["splits"][split]
        self.split, self.kind = split, kind
        self.pairs = np.load(self.dir / split / f"{kind}.npy")
        if kind == "patch":
            store = open_store(splits_root or self.manifest.get("splits_root", "data/splits"), split)
            if store.manifest_hash != entry["store_manifest_hash"]:
                raise DataError(
                    f"the pairs at '{self.dir}' were built from another version of '{store.root}' (manifest hash differs)",
                    "rebuild them: `histosynth snn pairs` (or `dvc repro pairs`)",
                )
            self.images = torch.from_numpy(np.array(store.images, dtype=np.uint8, copy=True))
            self.store = store
        else:
            self.images = torch.from_numpy(np.load(self.dir / split / "mosaics.npy"))
        if len(self.pairs) == 0:
            raise DataError(f"the pairs at '{self.dir}' hold no {kind} pairs for split '{split}'", "lower pairs.min_tiles or use pairs.stage1_unit=region, then rebuild")

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def labels(self) -> np.ndarray:
        return self.pairs["label"].astype(np.int64)

    @property
    def levels(self) -> np.ndarray:
        return self.pairs["level"].astype(np.int64)

    def batch(self, idx: np.ndarray, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (augmented A images, augmented B images, labels) for pair rows ``idx``."""
        p = self.pairs[np.asarray(idx)]
        xa = augment(to_model_input(self.images[torch.from_numpy(p["a"].astype(np.int64))], size, device), torch.from_numpy(np.ascontiguousarray(p["aug_a"])), p["seed_a"])
        xb = augment(to_model_input(self.images[torch.from_numpy(p["b"].astype(np.int64))], size, device), torch.from_numpy(np.ascontiguousarray(p["aug_b"])), p["seed_b"])
        return xa, xb, torch.from_numpy(p["label"].astype(np.int64)).to(device)
