#!/usr/bin/env python
"""What FID a perfect generator could score on this data: real patch sets scored like a generator.

With 213 test patches, FID has a large small-sample bias, so the absolute number needs references measured
the same way (FID Inception, the whole test split against the same number of patches drawn in its class mix,
as ``histosynth evaluate`` draws fakes):

- ``val``: the val split, new regions of the same images. The real-vs-real floor the demo prints.
- ``train``: training patches. This is what a generator that memorised its training set would score.

Each set is drawn ``--draws`` times with different seeds (mean +- std). FID is split into its mean term
``|mu_a - mu_b|^2`` and its covariance term, and the same split is given for every ``--bundle``. This shows
whether a generator loses on colour and layout on average (mean) or on variety and detail (covariance).
``--per-class`` adds each class's FID (the class's test patches against as many of the set's patches of that
class), which shows where a generator falls short of the references.

    python benchmarks/fid_references.py --data data/splits --bundle runs/<run>/generator
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch

from histosynth.evaluation.features import get_extractor
from histosynth.evaluation.metrics.fid import frechet_distance, per_class
from histosynth.evaluation.config import DEFAULT_EXTRACTOR
from histosynth.evaluation.suite import class_allocation, fake_features, open_split, real_features


def fid_terms(feats: np.ndarray, mu_r: np.ndarray, sigma_r: np.ndarray) -> dict[str, float]:
    mu, sigma = feats.mean(0), np.cov(feats, rowvar=False)
    fid = frechet_distance(mu, sigma, mu_r, sigma_r)
    mean_term = float(((mu - mu_r) ** 2).sum())
    return {"fid": fid, "mean_term": mean_term, "cov_term": fid - mean_term}


def class_fids(feats: np.ndarray, classes: np.ndarray, real: np.ndarray, real_classes: np.ndarray) -> dict[str, float]:
    """``fid/<class>`` of each class's rows of ``feats`` against the same class's real rows."""
    names = sorted(set(real_classes.tolist()))
    values, _ = per_class(real, real_classes, feats, classes, names)
    return {f"fid/{c}": v for c, v in values.items()}


def draw_like(store, class_ids: np.ndarray, seed: int) -> np.ndarray:
    """Patches of ``store`` in the class counts of ``class_ids`` (without replacement where the class allows)."""
    rng = np.random.default_rng(seed)
    labels = store.labels
    picks = []
    for c in np.unique(class_ids):
        pool = np.flatnonzero(labels == c)
        k = int((class_ids == c).sum())
        picks.append(rng.choice(pool, k, replace=k > len(pool)))
    return np.sort(np.concatenate(picks))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/splits", help="a split folder (train/val/test)")
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--bundle", action="append", default=[], help="generator.pt (or its folder) to split the same way (repeatable)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--per-class", action="store_true", help="also each class's FID against the test patches of that class")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ext = get_extractor(DEFAULT_EXTRACTOR, device="cpu")
    test = open_split(args.data, "test")
    real, (mu_r, sigma_r), used, _ = real_features(test, "test", ext)
    ids = class_allocation(test.labels, test.classes, test.classes, len(test), 0)
    names = np.asarray(test.classes)

    def score(feats: np.ndarray, classes: np.ndarray) -> dict[str, float]:
        extra = class_fids(feats, classes, real, names[test.labels[used]]) if args.per_class else {}
        return {**fid_terms(feats, mu_r, sigma_r), **extra}
    rows: dict[str, list[dict[str, float]]] = {}
    for name in ("val", "train"):
        store = open_split(args.data, name)
        for seed in range(args.draws):
            idx = draw_like(store, ids, seed)
            rows.setdefault(name, []).append(score(ext(np.asarray(store.images[idx])), np.asarray(store.classes)[store.labels[idx]]))
    for b in args.bundle:
        from histosynth.gan.bundle import load_generator

        gen, meta = load_generator(b)
        cls = np.array([meta["classes"].index(test.classes[c]) for c in ids])
        for seed in range(args.draws):
            feats, _ = fake_features(gen, meta["spec"], ext, len(test), class_ids=cls, seed=seed, batch_size=64, device=torch.device("cpu"))
            rows.setdefault(b, []).append(score(feats, names[ids]))
    print(f"FID against the test split ({len(test)} patches, {DEFAULT_EXTRACTOR}), {args.draws} draws of {len(test)} each")
    per = [k for k in next(iter(rows.values()))[0] if k.startswith("fid/")]
    print(f"{'set':<40} {'FID':>14} {'mean term':>12} {'cov term':>12}" + "".join(f" {k[4:][:12]:>12}" for k in per))
    summary = {}
    for name, rs in rows.items():
        s = {k: (statistics.mean(r[k] for r in rs), statistics.stdev(r[k] for r in rs) if len(rs) > 1 else 0.0) for k in rs[0]}
        summary[name] = {"runs": rs, **{k: {"mean": m, "std": sd} for k, (m, sd) in s.items()}}
        print(f"{name[-40:]:<40} {s['fid'][0]:>7.1f} +- {s['fid'][1]:<4.1f} {s['mean_term'][0]:>12.1f} {s['cov_term'][0]:>12.1f}" + "".join(f" {s[k][0]:>12.1f}" for k in per))
    if args.json:
        args.json.write_text(json.dumps({"data": args.data, "n": len(test), "extractor": DEFAULT_EXTRACTOR, "results": summary}, indent=2))


if __name__ == "__main__":
    main()
