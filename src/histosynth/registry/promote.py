"""Gated promotion of a registered generator version to an alias (``champion`` by default).

``promote(name, version, alias)`` moves ``name@alias`` to ``version`` only when every gate passes:

1. **metric**: the chosen evaluation metric logged on the version's run (``histosynth evaluate --run-id``; default
   ``fid``, found as ``test/fid`` then ``val/fid`` then any ``*/fid``) is not worse than the current champion's by
   more than ``margin`` (relative). Lower is better for fid/kid/ppl, higher for precision/recall/density/coverage/is;
   ``higher_is_better`` overrides. No champion yet: nothing to compare, the absolute gates below still judge.
2. **fid / precision / recall** (absolute quality): FID at most ``max_fid``, precision and recall at least
   ``min_precision`` / ``min_recall`` (:data:`QUALITY_LIMITS`), whatever the champion is: a relative gate alone
   would wave through the first model however bad. A metric never logged fails its gate.
3. **parity**: the version's ``onnx_parity_max_abs_diff`` tag (set by ``histosynth export``) is present and at
   most ``max_parity_diff``: what Triton serves reproduces the PyTorch generator.
4. **memorization**: samples of the generator are embedded with a feature extractor (``histosynth.evaluation.features``;
   by default the FID Inception under bf16 autocast, :data:`DEFAULT_NN_EXTRACTOR`) and
   each one's nearest-neighbour L2 distance to the training patches is measured, relative to the typical
   train-to-train nearest-neighbour distance (so the threshold does not depend on the extractor's scale). The
   smallest such distance must be at least ``min_nn_distance``: one generated patch that copies patient tissue
   (distance ~0) blocks promotion. Training patches come from the run's ``data.store`` param (what it trained
   on) or ``train_data``.

Every gate runs even after one fails, so a refusal names all the problems with their numbers. Results are written
as ``promotion.*`` tags on the version (unless ``dry_run``); a refusal raises :class:`PromotionRefused` (CLI: exit 2).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from histosynth.errors import HistosynthError

Progress = Callable[[str, int, int], None]  # (phase, done, total)

DEFAULT_ALIAS = "champion"
DEFAULT_METRIC = "fid"
DEFAULT_MARGIN = 0.05
DEFAULT_MAX_PARITY = 1e-4
DEFAULT_MIN_NN = 0.1
DEFAULT_N_SAMPLES = 256
DEFAULT_N_TRAIN = 2000
# The FID Inception in bf16 where the hardware has it: only relative nearest-neighbour distances matter here, and
# the training-patch features were the slowest part of a first promote (0.56x the time on 2 CPU cores: BENCHMARKS.md)
DEFAULT_NN_EXTRACTOR = "inception-fid-bf16"
# Absolute quality limits. The sample data's own real-vs-real FID (val vs test, 213 vs 213 patches) is 95.8, so
# 150 leaves room for a usable generator while refusing a collapsed one (FID ~400, precision and recall 0).
QUALITY_LIMITS = {"max_fid": 150.0, "min_precision": 0.5, "min_recall": 0.3}
LOWER_IS_BETTER = {"fid", "kid", "ppl", "cmmd"}
HIGHER_IS_BETTER = {"is", "precision", "recall", "density", "coverage"}
TAG_PREFIX = "promotion."


class PromotionRefused(HistosynthError):
    """A gate failed; ``result`` holds every gate's numbers."""

    def __init__(self, problem: str, hint: str | None, result: "PromotionResult"):
        super().__init__(problem, hint)
        self.result = result


@dataclass
class Gate:
    name: str
    passed: bool
    detail: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class PromotionResult:
    name: str
    version: int
    alias: str
    previous: int | None
    promoted: bool
    dry_run: bool
    gates: list[Gate]

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    def failed(self) -> list[Gate]:
        return [g for g in self.gates if not g.passed]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d


def metric_direction(metric: str, higher_is_better: bool | None = None) -> bool:
    """True when larger values of ``metric`` are better."""
    if higher_is_better is not None:
        return higher_is_better
    base = metric.rsplit("/", 1)[-1].lower()
    if base in LOWER_IS_BETTER:
        return False
    if base in HIGHER_IS_BETTER:
        return True
    raise HistosynthError(f"no known direction for metric '{metric}'", "pass --higher-is-better or --lower-is-better")


def find_metric(metrics: dict[str, float], metric: str) -> tuple[str, float] | None:
    """(key, value) of ``metric`` in a run's metrics: the exact key, else test/, val/, then any */metric."""
    if metric in metrics:
        return metric, metrics[metric]
    for key in (f"test/{metric}", f"val/{metric}"):
        if key in metrics:
            return key, metrics[key]
    found = sorted(k for k in metrics if k.endswith("/" + metric) and not k.startswith(("epoch/", "final/")))
    return (found[0], metrics[found[0]]) if found else None


def metric_gate(candidate: float | None, champion: float | None, metric: str, margin: float, higher: bool, key: str, champion_version: int | None) -> Gate:
    values = {"metric": key, "candidate": candidate, "champion": champion, "champion_version": champion_version, "margin": margin, "higher_is_better": higher}
    if candidate is None or not math.isfinite(candidate):
        return Gate("metric", False, f"no finite '{metric}' logged on the candidate's run", values)
    if champion is None:
        return Gate("metric", True, f"{key} = {candidate:.4g}; no current champion to compare with", values)
    limit = champion * (1 - margin) if higher else champion * (1 + margin)
    if champion < 0:  # a relative margin on a negative number flips; use the absolute value
        limit = champion - abs(champion) * margin if higher else champion + abs(champion) * margin
    ok = candidate >= limit if higher else candidate <= limit
    cmp = ">=" if higher else "<="
    values["limit"] = limit
    return Gate("metric", ok, f"{key} = {candidate:.4g} vs champion v{champion_version} {champion:.4g}: needs {cmp} {limit:.4g} (margin {margin:g})", values)


def quality_gates(metrics: dict[str, float], limits: dict[str, float], fix: str) -> list[Gate]:
    """One gate per ``max_<metric>`` / ``min_<metric>`` limit on the run's logged ``metrics``; ``fix``: how to log them."""
    gates = []
    for limit_name, limit in limits.items():
        bound, metric = limit_name.split("_", 1)
        found = find_metric(metrics, metric)
        values = {"metric": found[0] if found else metric, "value": found[1] if found else None, limit_name: limit}
        if found is None or not math.isfinite(found[1]):
            gates.append(Gate(metric, False, f"no finite '{metric}' logged on the version's run: never evaluated", {**values, "fix": fix}))
            continue
        ok = found[1] <= limit if bound == "max" else found[1] >= limit
        cmp = "<=" if bound == "max" else ">="
        gates.append(Gate(metric, ok, f"{found[0]} = {found[1]:.4g}; needs {cmp} {limit:g}", values))
    return gates


def evaluate_command(run_id: str | None, bundle: Path | None) -> str:
    """The ``histosynth evaluate`` call that logs the quality metrics to the version's run."""
    return f"run `histosynth evaluate --bundle {bundle or 'GENERATOR.pt'} --real data/splits --split test --run-id {run_id or 'RUN_ID'}` (--real: the splits it was trained from)"


def parity_gate(tag: str | None, max_diff: float) -> Gate:
    values = {"onnx_parity_max_abs_diff": tag, "max": max_diff}
    if tag is None:
        return Gate("parity", False, "no onnx_parity_max_abs_diff tag: the version was never exported (histosynth export)", values)
    try:
        diff = float(tag)
    except ValueError:
        return Gate("parity", False, f"onnx_parity_max_abs_diff tag '{tag}' is not a number", values)
    values["onnx_parity_max_abs_diff"] = diff
    ok = math.isfinite(diff) and diff <= max_diff
    return Gate("parity", ok, f"ONNX max |onnx - torch| = {diff:.3g} ({'<=' if ok else '>'} {max_diff:g})", values)


def nn_distances(fake: np.ndarray, real: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """L2 distance from each row of ``fake`` to its nearest row of ``real`` (float64, chunked)."""
    fake, real = np.asarray(fake, np.float64), np.asarray(real, np.float64)
    r2 = (real**2).sum(1)
    out = np.empty(len(fake))
    for i in range(0, len(fake), chunk):
        f = fake[i : i + chunk]
        d2 = (f**2).sum(1)[:, None] + r2[None, :] - 2.0 * f @ real.T
        out[i : i + chunk] = np.sqrt(np.clip(d2.min(1), 0.0, None))
    return out


def train_nn_scale(real: np.ndarray, chunk: int = 1024) -> float:
    """Median nearest-neighbour distance among training features (self excluded; exact duplicates ignored)."""
    real = np.asarray(real, np.float64)
    r2 = (real**2).sum(1)
    nn = np.empty(len(real))
    for i in range(0, len(real), chunk):
        f = real[i : i + chunk]
        d2 = r2[i : i + chunk, None] + r2[None, :] - 2.0 * f @ real.T
        d2 = np.clip(d2, 0.0, None)
        d2[d2 <= 1e-12 * max(1.0, float(np.median(r2)))] = np.inf  # self and duplicates
        nn[i : i + chunk] = np.sqrt(d2.min(1))
    finite = nn[np.isfinite(nn)]
    if not len(finite):
        raise HistosynthError("the training patches are all identical: no nearest-neighbour scale", "pass --train-data with the real training split")
    return float(np.median(finite))


def _as_phase(progress: Progress | None, name: str) -> Progress | None:
    """``progress`` with the suite's "real features" phases named ``name`` (they are training patches here)."""
    return None if progress is None else (lambda phase, done, total: progress(phase.replace("real features", name), done, total))


def memorization_gate(
    bundle: Path,
    train_root: str | Path,
    min_nn: float,
    n_samples: int,
    n_train: int,
    extractor: str,
    seed: int,
    device: str,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> Gate:
    """Generate ``n_samples`` images, embed them and up to ``n_train`` training patches, compare NN distances.
    ``progress(phase, done, total)`` hears of each phase (most images go through the extractor as training patches)."""
    import torch

    from histosynth.gan.bundle import load_generator
    from histosynth.evaluation.suite import fake_features, open_split, phase, real_features
    from histosynth.device import resolve_device
    from histosynth.evaluation.features import get_extractor

    dev = resolve_device(device, "--device")
    store = open_split(train_root, "train")
    with phase(progress, f"load {extractor}"):
        ext = get_extractor(extractor, dev)
    n_all = len(store)
    if n_all < 2:
        raise HistosynthError(f"training store '{store.root}' has {n_all} patch(es)", "pass --train-data with the real training split")
    # the evaluation suite's feature cache (keyed by the store's manifest hash, subset and extractor): the
    # training-patch features are the slow part of this gate and do not change between candidates
    real, _, idx, _ = real_features(
        store, "train", ext, n_real=None if n_all <= n_train else n_train, seed=seed, batch_size=batch_size, progress=_as_phase(progress, "training-patch features")
    )
    gen, meta = load_generator(bundle, dev)
    k = int(meta["spec"].get("num_classes", 0) or 0)
    class_ids = (np.arange(n_samples) % k).astype(np.int64) if k else None
    with torch.inference_mode():
        fake, _ = fake_features(gen, meta["spec"], ext, n_samples, class_ids=class_ids, seed=seed, batch_size=batch_size, device=dev, progress=progress)
    with phase(progress, "nearest neighbours"):
        scale = train_nn_scale(real)
        d = nn_distances(fake, real) / scale
    worst = int(np.argmin(d))
    values = {
        "min": float(d.min()),
        "p01": float(np.percentile(d, 1)),
        "median": float(np.median(d)),
        "threshold": min_nn,
        "closest_sample": worst,
        "train_nn_scale": scale,
        "n_samples": int(n_samples),
        "n_train": int(len(idx)),
        "extractor": ext.name,
        "train_store": str(store.root),
    }
    ok = bool(d.min() >= min_nn)
    detail = (
        f"nearest-neighbour distance to training patches (relative to the train-train median {scale:.4g} in {ext.name} space): "
        f"min {d.min():.4g} (sample {worst}), median {np.median(d):.4g}; needs >= {min_nn:g}"
    )
    return Gate("memorization", ok, detail, values)


def _train_root(run, train_data: str | Path | None) -> Path:
    if train_data:
        return Path(train_data)
    params = run.data.params if run is not None else {}
    if params.get("data.store"):
        return Path(params["data.store"])
    if params.get("data.root"):
        return Path(params["data.root"]) / params.get("data.split", "train")
    raise HistosynthError("the version's run logs no training data (params data.store / data.root)", "pass --train-data PATH (the training split the generator was trained on)")


def promote(
    name: str,
    version: int,
    alias: str = DEFAULT_ALIAS,
    *,
    metric: str = DEFAULT_METRIC,
    margin: float = DEFAULT_MARGIN,
    higher_is_better: bool | None = None,
    max_parity_diff: float = DEFAULT_MAX_PARITY,
    quality_limits: dict[str, float] | None = None,
    min_nn_distance: float = DEFAULT_MIN_NN,
    train_data: str | Path | None = None,
    n_samples: int = DEFAULT_N_SAMPLES,
    n_train: int = DEFAULT_N_TRAIN,
    extractor: str = DEFAULT_NN_EXTRACTOR,
    seed: int = 0,
    device: str = "auto",
    dry_run: bool = False,
    tracking_uri: str = "",
    progress: Progress | None = None,
) -> PromotionResult:
    """Check the gates for ``name`` v``version`` and move ``name@alias`` to it when all pass (see module doc).

    ``quality_limits``: overrides of :data:`QUALITY_LIMITS` (e.g. ``{"max_fid": 120}``); ``progress``: as in
    :func:`memorization_gate`, the only slow gate."""
    from histosynth import registry

    if margin < 0 or n_samples < 1 or n_train < 2:
        raise HistosynthError(f"invalid settings: margin={margin}, n_samples={n_samples}, n_train={n_train}", "use margin >= 0, n_samples >= 1, n_train >= 2")
    unknown = set(quality_limits or {}) - set(QUALITY_LIMITS)
    if unknown:
        raise HistosynthError(f"unknown quality limit(s) {sorted(unknown)}", f"use {', '.join(QUALITY_LIMITS)}")
    limits = {**QUALITY_LIMITS, **(quality_limits or {})}
    client = registry._client(tracking_uri)
    mv = registry.get_model_version(name, version=int(version), tracking_uri=tracking_uri)
    try:
        current = registry.get_model_version(name, alias=alias, tracking_uri=tracking_uri)
    except registry.RegistryError:
        current = None
    higher = metric_direction(metric, higher_is_better)

    run = client.get_run(mv.run_id) if mv.run_id else None
    cand = find_metric(run.data.metrics if run else {}, metric)
    key = cand[0] if cand else metric
    champ_value, champ_version = None, None
    if current is not None and int(current.version) != int(mv.version):
        champ_version = int(current.version)
        champ_run = client.get_run(current.run_id) if current.run_id else None
        found = find_metric(champ_run.data.metrics, key) if champ_run else None
        champ_value = found[1] if found else None
    if champ_version is not None and champ_value is None:
        # a champion without the metric cannot be compared: say so rather than wave the candidate through
        gates = [Gate("metric", False, f"current champion v{champ_version} has no '{key}' logged; evaluate it first (histosynth evaluate --run-id)", {"champion_version": champ_version, "metric": key})]
    else:
        gates = [metric_gate(cand[1] if cand else None, champ_value, metric, margin, higher, key, champ_version)]
    try:
        bundle, bundle_error = registry.resolve_generator(name, version=int(mv.version), tracking_uri=tracking_uri), None
    except HistosynthError as e:
        bundle, bundle_error = None, e
    gates += quality_gates(run.data.metrics if run else {}, limits, evaluate_command(mv.run_id, bundle))
    gates.append(parity_gate((mv.tags or {}).get("onnx_parity_max_abs_diff"), max_parity_diff))
    try:
        if bundle_error is not None:
            raise bundle_error
        gates.append(memorization_gate(bundle, _train_root(run, train_data), min_nn_distance, n_samples, n_train, extractor, seed, device, progress=progress))
    except HistosynthError as e:
        gates.append(Gate("memorization", False, f"could not be checked: {e.problem}", {"error": e.problem, "fix": e.hint}))

    result = PromotionResult(name, int(mv.version), alias, int(current.version) if current is not None else None, False, dry_run, gates)
    if not dry_run:
        if result.passed:
            registry.set_alias(name, alias, int(mv.version), tracking_uri=tracking_uri)
            result.promoted = True
        _record(client, result)
    if not result.passed and not dry_run:
        failed = "; ".join(f"{g.name}: {g.detail}" for g in result.failed())
        raise PromotionRefused(
            f"{name} v{mv.version} not promoted to '{alias}' ({len(result.failed())} gate(s) failed): {failed}",
            next((g.values.get("fix") for g in result.failed() if g.values.get("fix")), None) or "fix what the failed gates name, or promote another version",
            result,
        )
    return result


def _record(client, result: PromotionResult) -> None:
    """``promotion.*`` tags on the version: the outcome and each gate's verdict and numbers."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    tags = {
        "status": "promoted" if result.promoted else "refused",
        "alias": result.alias,
        "time": stamp,
        "previous": "" if result.previous is None else str(result.previous),
    }
    for g in result.gates:
        tags[f"{g.name}.passed"] = str(g.passed).lower()
        tags[f"{g.name}.detail"] = g.detail[:4900]
        tags[f"{g.name}.values"] = json.dumps(g.values, default=str)[:4900]
    for k, v in tags.items():
        client.set_model_version_tag(result.name, str(result.version), TAG_PREFIX + k, v)
