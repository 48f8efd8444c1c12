"""On-disk cache of real-set features and their FID statistics.

Key = sha256 of {format, dataset (PatchStore.manifest_hash, split, subset size + seed), extractor identity
(name, dim, preprocessing, weights sha256)}: a changed store, split, network or preprocessing never hits an old
entry. Entries are ``<cache>/features/<key>.npz`` holding ``features`` (float32 when that is lossless, else
float64), ``mu`` and ``sigma`` (float64) and a JSON ``meta``; written atomically (:mod:`histosynth.files.atomic`), so readers see either the old entry, the new one, or none — never a partial file. An entry
that cannot be read is treated as a miss and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from histosynth import defaults
from histosynth.evaluation.features.base import Extractor
from histosynth.files.atomic import atomic_open

FORMAT = "histosynth.evaluation.features/1"


def cache_dir() -> Path:
    return defaults.paths().cache / "features"


def cache_key(dataset: dict[str, Any], extractor: Extractor | dict[str, Any]) -> str:
    ident = extractor.identity() if isinstance(extractor, Extractor) else dict(extractor)
    blob = json.dumps({"format": FORMAT, "dataset": dataset, "extractor": ident}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def entry_path(key: str) -> Path:
    return cache_dir() / f"{key}.npz"


def load(key: str) -> dict[str, Any] | None:
    """The entry {features, mu, sigma, meta} or None (missing or unreadable)."""
    path = entry_path(key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            entry = {"features": z["features"].astype(np.float64), "mu": z["mu"], "sigma": z["sigma"], "meta": json.loads(str(z["meta"]))}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, EOFError):
        return None
    if entry["meta"].get("format") != FORMAT or entry["meta"].get("key") != key:
        return None
    return entry


def save(key: str, features: np.ndarray, mu: np.ndarray, sigma: np.ndarray, meta: dict[str, Any]) -> Path:
    path = entry_path(key)
    f32 = features.astype(np.float32)
    stored = f32 if np.array_equal(f32.astype(np.float64), features) else np.asarray(features, np.float64)
    with atomic_open(path) as f:
        np.savez(f, features=stored, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64), meta=np.array(json.dumps({**meta, "format": FORMAT, "key": key}, sort_keys=True)))
    return path
