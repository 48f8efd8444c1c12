"""Sample-quality metrics on feature arrays: one module per metric, one registry, one ``DEFAULTS``.

``METRICS[name](real, fake, **options) -> dict`` where real/fake are (n, dim) feature arrays (for ``is``: logits).
``compute(names, real, fake, ...)`` runs several at once, sharing work (precision/recall and density/coverage
use one set of distance computations) and splitting numbers from details.

=====================  ==========================================================================
name                   keys
=====================  ==========================================================================
``fid``                fid
``kid``                kid_mean, kid_std (+ kid_subset_size, kid_subsets)
``precision_recall``   precision, recall, f1 (k = pr_k = 3)
``density_coverage``   density, coverage (k = dc_k = 5)
``is``                 is_mean, is_std — needs an extractor with classifier logits
``cmmd``               cmmd (x1000, RBF sigma 10 on L2-normalised features; CLIP-CMMD only on CLIP)
``ppl``                ppl — needs the generator (``generator=GeneratorHandle``), not features
=====================  ==========================================================================
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from histosynth.errors import HistosynthError
from histosynth.evaluation.metrics import cmmd, density_coverage, fid, inception_score, kid, ppl, precision_recall
from histosynth.evaluation.metrics._manifold import manifold_metrics
from histosynth.evaluation.metrics.defaults import DEFAULTS

MetricFn = Callable[..., dict]

METRICS: dict[str, MetricFn] = {
    "fid": fid.compute,
    "kid": kid.compute,
    "precision_recall": precision_recall.compute,
    "density_coverage": density_coverage.compute,
    "is": inception_score.compute,
    "cmmd": cmmd.compute,
    "ppl": ppl.compute,
}
ALIASES = {"pr": "precision_recall", "prc": "precision_recall", "dc": "density_coverage", "prdc": "density_coverage", "isc": "is", "inception_score": "is", "perceptual_path_length": "ppl"}
LOGIT_METRICS = {"is"}  # computed on classifier logits, not on features
GENERATOR_METRICS = {"ppl"}  # computed on the generator itself (``generator=``), not on features

frechet_distance = fid.frechet_distance


def resolve_names(names: str | list[str] | tuple[str, ...]) -> list[str]:
    """'fid,kid' or a list -> canonical names, in order, without duplicates; unknown names are errors."""
    if isinstance(names, str):
        names = [n for n in (s.strip() for s in names.split(",")) if n]
    out: list[str] = []
    for raw in names:
        name = ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if name not in METRICS:
            known = ", ".join(list(METRICS) + sorted(ALIASES))
            raise HistosynthError(f"unknown metric '{raw}'", f"use some of: {known}")
        if name not in out:
            out.append(name)
    if not out:
        raise HistosynthError("no metric requested", f"use some of: {', '.join(METRICS)}")
    return out


def options(**overrides: Any) -> dict[str, Any]:
    """DEFAULTS updated with ``overrides`` (unknown keys are errors, so a typo never silently uses a default)."""
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise HistosynthError(f"unknown metric option(s) {unknown}", f"known options: {', '.join(sorted(DEFAULTS))}")
    return {**DEFAULTS, **overrides}


def compute(
    names: str | list[str] | tuple[str, ...],
    real: np.ndarray,
    fake: np.ndarray,
    *,
    real_logits: np.ndarray | None = None,
    fake_logits: np.ndarray | None = None,
    real_stats: tuple[np.ndarray, np.ndarray] | None = None,
    generator: ppl.GeneratorHandle | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    **overrides: Any,
) -> tuple[dict[str, float], dict[str, Any]]:
    """-> (metrics: name -> float, details: routes, k, subset sizes, seconds per metric)."""
    opts = options(**overrides)
    wanted = resolve_names(names)
    values: dict[str, Any] = {}
    timings: dict[str, float] = {}
    both_manifold = "precision_recall" in wanted and "density_coverage" in wanted
    for name in wanted:  # in the order asked for (results and tables follow it)
        t0 = time.perf_counter()
        if both_manifold and name in ("precision_recall", "density_coverage"):
            if "precision" not in values:  # one pass of distances serves both
                values.update(manifold_metrics(real, fake, pr_k=opts["pr_k"], dc_k=opts["dc_k"], device=opts["device"], block_elems=opts["block_elems"]))
                timings["precision_recall+density_coverage"] = time.perf_counter() - t0
            continue
        if name in GENERATOR_METRICS:
            values.update(METRICS[name](generator=generator, progress=progress, **opts))
        elif name in LOGIT_METRICS:
            if fake_logits is None:
                raise HistosynthError(
                    f"metric '{name}' needs classifier logits, and this extractor has none",
                    "the FID Inception (fid-helper default_1.pt) has no logits layer; drop 'is' from the metrics",
                )
            values.update(METRICS[name](real_logits, fake_logits, **opts))
        elif name == "fid":
            values.update(METRICS[name](real, fake, real_stats=real_stats, **opts))
        else:
            values.update(METRICS[name](real, fake, **opts))
        timings[name] = time.perf_counter() - t0
    metrics = {k: float(v) for k, v in values.items() if isinstance(v, float)}
    details = {k: v for k, v in values.items() if not isinstance(v, float)}
    details["seconds"] = timings
    return metrics, details


__all__ = ["ALIASES", "DEFAULTS", "GENERATOR_METRICS", "LOGIT_METRICS", "METRICS", "compute", "frechet_distance", "options", "resolve_names"]
