"""Feature-stat cache: keys, hit/miss, atomic writes, unreadable entries."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from histosynth.evaluation.features import Extractor
from histosynth.evaluation.features import cache as FC

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("private_cache")]


def ext(name="e", preprocess="p", sha="s"):
    return Extractor(name=name, dim=4, preprocess=preprocess, forward=lambda x: x, device=torch.device("cpu"), weights_sha256=sha)


DS = {"manifest_hash": "abc", "split": "test", "subset": None}


def test_key_depends_on_dataset_and_extractor():
    k = FC.cache_key(DS, ext())
    assert k == FC.cache_key(dict(DS), ext())
    assert k != FC.cache_key({**DS, "split": "val"}, ext())
    assert k != FC.cache_key({**DS, "manifest_hash": "abd"}, ext())
    assert k != FC.cache_key({**DS, "subset": {"n": 10, "seed": 0}}, ext())
    assert k != FC.cache_key(DS, ext(name="f"))
    assert k != FC.cache_key(DS, ext(preprocess="q"))
    assert k != FC.cache_key(DS, ext(sha="t"))


def test_miss_then_hit_roundtrip():
    key = FC.cache_key(DS, ext())
    assert FC.load(key) is None
    f = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32).astype(np.float64)
    mu, sigma = f.mean(0), np.cov(f, rowvar=False)
    path = FC.save(key, f, mu, sigma, {"note": "x"})
    assert path.parent == FC.cache_dir()
    entry = FC.load(key)
    assert np.array_equal(entry["features"], f) and np.array_equal(entry["sigma"], sigma)
    assert entry["meta"]["note"] == "x" and entry["meta"]["key"] == key
    with np.load(path) as z:
        assert z["features"].dtype == np.float32  # lossless float32 storage for float32-born features
    g = f + 1e-12  # not float32-representable -> stored as float64, still exact
    FC.save(key, g, mu, sigma, {})
    assert np.array_equal(FC.load(key)["features"], g)


def test_crash_mid_write_keeps_old_entry_and_leaves_no_temp(monkeypatch):
    key = FC.cache_key(DS, ext())
    f = np.ones((3, 4))
    FC.save(key, f, f.mean(0), np.eye(4), {"v": 1})

    def boom(fileobj, **arrays):
        fileobj.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    with monkeypatch.context() as m, pytest.raises(OSError, match="disk full"):
        m.setattr(np, "savez", boom)
        FC.save(key, f * 2, f.mean(0), np.eye(4), {"v": 2})
    assert FC.load(key)["meta"]["v"] == 1
    assert [p.name for p in FC.cache_dir().iterdir()] == [f"{key}.npz"]


def test_unreadable_entry_is_a_miss():
    key = FC.cache_key(DS, ext())
    FC.cache_dir().mkdir(parents=True, exist_ok=True)
    FC.entry_path(key).write_bytes(b"garbage")
    assert FC.load(key) is None
    other = FC.cache_key({**DS, "split": "val"}, ext())
    FC.save(other, np.ones((2, 4)), np.ones(4), np.eye(4), {})
    FC.entry_path(other).replace(FC.entry_path(key))  # an entry under the wrong key name
    assert FC.load(key) is None


def test_concurrent_writers_leave_one_valid_entry():
    key = FC.cache_key(DS, ext())
    errors = []

    def write(i):
        try:
            f = np.full((50, 4), float(i))
            FC.save(key, f, f.mean(0), np.eye(4), {"writer": i})
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    entry = FC.load(key)
    assert entry is not None and np.all(entry["features"] == entry["meta"]["writer"])
    assert len(list(FC.cache_dir().iterdir())) == 1
