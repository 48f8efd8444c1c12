"""Evaluate a generator bundle against a real patch split: features, metrics, one JSON line, MLflow.

``evaluate_generator`` is the one entry point (CLI ``histosynth evaluate`` and the KFP component call it):

1. real features of ``<real_root>/<split>`` (a PatchStore; ``real_root`` may also be a store itself) from the
   feature cache (key: store manifest hash + split + subset + extractor identity), extracted and cached on a miss;
2. ``n_fake`` samples from the bundle (``histosynth.gan.bundle.load_generator``), seeded; a class-conditional generator
   gets class ids in the real split's class proportions (largest-remainder rounding, shuffled with the seed);
   generator output [-1, 1] is quantized to uint8 exactly like stored patches, then goes through the extractor's
   one preprocessing path, as the real patches do;
3. the metrics (``histosynth.evaluation.metrics``; for a class-conditional generator also the FID per class,
   ``fid/<class>`` and ``fid_class_mean``, from the same features), the result record appended as one JSON line to ``out_jsonl`` and, with
   ``mlflow_run_id``, logged to that run (metrics ``<split>/<name>``, prefixed by the extractor name when it is not
   the standard ``inception-fid``; the record as an artifact under ``evaluations/``).

Every record says whether its numbers may be set beside published ones (``comparable_with_published``): only for
the standard networks, and even then FID is biased by sample size (published FIDs mostly use 50k samples).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

import histosynth
from histosynth.evaluation import metrics as M
from histosynth.gan.bundle import FILENAME as BUNDLE_FILENAME
from histosynth.gan.bundle import load_generator
from histosynth.data.store import MANIFEST, PatchStore
from histosynth.errors import DataError, HistosynthError
from histosynth.device import resolve_device
from histosynth.evaluation.config import DEFAULT_EXTRACTOR, EvalConfig
from histosynth.evaluation.features import Extractor, get_extractor, to_uint8
from histosynth.files.atomic import sha256_file
from histosynth.evaluation.features import cache as feature_cache
from histosynth.evaluation.metrics._linalg import mean_cov

RECORD_FORMAT = "histosynth.evaluation/1"
Progress = Callable[[str, int, int], None]  # (stage, done, total)


@contextmanager
def phase(progress: Progress | None, name: str) -> Iterator[None]:
    """Report a step without natural counts (loading, metrics, plots) as one 0/1 -> 1/1 stage."""
    if progress:
        progress(name, 0, 1)
    yield
    if progress:
        progress(name, 1, 1)


def open_split(real_root: str | Path, split: str) -> PatchStore:
    root = Path(real_root)
    if (root / split / MANIFEST).is_file():
        return PatchStore(root / split)
    if (root / MANIFEST).is_file():
        return PatchStore(root)
    raise DataError(
        f"no patch store for split '{split}' under '{root}' (looked for {root / split / MANIFEST} and {root / MANIFEST})",
        "build the splits first (histosynth data split / dvc repro) or pass --real pointing at a split folder",
    )


def real_features(
    store: PatchStore,
    split: str,
    extractor: Extractor,
    *,
    n_real: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    refresh: bool = False,
    progress: Progress | None = None,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], np.ndarray, dict[str, Any]]:
    """-> (features, (mu, sigma), indices used, cache info {hit, path, key, seconds})."""
    n_all = len(store)
    if n_real is not None and n_real < 2:
        raise HistosynthError(f"n_real={n_real} is too small", "use at least 2 real patches (hundreds for stable numbers)")
    if n_real is None or n_real >= n_all:
        idx = np.arange(n_all)
        subset = None
    else:
        idx = np.sort(np.random.RandomState(seed).choice(n_all, n_real, replace=False))
        subset = {"n": int(n_real), "seed": int(seed)}
    dataset = {"manifest_hash": store.manifest_hash, "split": split, "subset": subset}
    key = feature_cache.cache_key(dataset, extractor)
    t0 = time.perf_counter()
    entry = None if refresh else feature_cache.load(key)
    if entry is not None and entry["features"].shape == (len(idx), extractor.dim):
        if progress:
            progress("real features from the cache", len(idx), len(idx))
        info = {"hit": True, "key": key, "path": str(feature_cache.entry_path(key)), "seconds": time.perf_counter() - t0}
        return entry["features"], (entry["mu"], entry["sigma"]), idx, info
    images = store.images
    done = 0
    feats = np.empty((len(idx), extractor.dim), dtype=np.float64)
    for i in range(0, len(idx), batch_size):
        sel = idx[i : i + batch_size]
        feats[i : i + len(sel)] = extractor(np.asarray(images[sel]))
        done += len(sel)
        if progress:
            progress("real features", done, len(idx))
    mu, sigma = mean_cov(feats)
    meta = {"dataset": dataset, "extractor": extractor.identity(), "store": str(store.root), "created": _now()}
    path = feature_cache.save(key, feats, mu, sigma, meta)
    return feats, (mu, sigma), idx, {"hit": False, "key": key, "path": str(path), "seconds": time.perf_counter() - t0}


def class_allocation(real_labels: np.ndarray, real_classes: list[str], gen_classes: list[str], n: int, seed: int) -> np.ndarray:
    """Generator class ids for ``n`` samples in the real class proportions (largest remainder), shuffled."""
    counts = np.bincount(real_labels, minlength=len(real_classes)).astype(np.float64)
    present = [c for c, k in zip(real_classes, counts) if k > 0]
    missing = [c for c in present if c not in gen_classes]
    if missing:
        raise DataError(f"the real split has classes {missing} that the generator does not know ({gen_classes})", "evaluate on a split with the generator's classes")
    share = counts / counts.sum() * n
    alloc = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - alloc), kind="stable")
    alloc[order[: n - alloc.sum()]] += 1
    ids = np.concatenate([np.full(k, gen_classes.index(real_classes[c]), dtype=np.int64) for c, k in enumerate(alloc) if k > 0])
    np.random.RandomState(seed).shuffle(ids)
    return ids


@torch.inference_mode()
def fake_features(
    generator: torch.nn.Module,
    spec: dict[str, Any],
    extractor: Extractor,
    n: int,
    *,
    class_ids: np.ndarray | None,
    seed: int,
    batch_size: int,
    device: torch.device,
    want_logits: bool = False,
    progress: Progress | None = None,
    images_out: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Sample ``n`` images (latents drawn on CPU with ``seed``: the same images on any device) and extract features.

    ``images_out``: when given, the uint8 NHWC batches are appended to it (for diagnostics and other extractors)."""
    latent = int(spec.get("latent_dim", 100))
    gen = torch.Generator().manual_seed(int(seed))
    feats = np.empty((n, extractor.dim), dtype=np.float64)
    logits: list[np.ndarray] = []
    for i in range(0, n, batch_size):
        b = min(batch_size, n - i)
        z = torch.randn(b, latent, generator=gen).to(device)
        y = torch.as_tensor(class_ids[i : i + b], device=device) if class_ids is not None else None
        imgs = to_uint8(generator(z, y) if y is not None else generator(z))
        feats[i : i + b] = extractor(imgs)
        if images_out is not None:
            images_out.append(imgs.permute(0, 2, 3, 1).cpu().numpy())
        if want_logits:
            logits.append(extractor.class_logits(imgs))
        if progress:
            progress("fake features", i + b, n)
    return feats, (np.concatenate(logits) if want_logits else None)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def append_jsonl(path: str | Path, record: dict[str, Any]) -> Path:
    """One line per record, written with a single O_APPEND write (concurrent writers do not interleave lines)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def metric_key(split: str, extractor: str, name: str) -> str:
    return f"{split}/{name}" if extractor == DEFAULT_EXTRACTOR else f"{split}/{extractor}/{name}"


def log_to_mlflow(run_id: str, record: dict[str, Any], tracking_uri: str = "") -> None:
    from histosynth import tracking

    tracking.configure(tracking_uri)
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        client.get_run(run_id)
    except Exception as e:  # noqa: BLE001 - unknown id, unreachable server
        raise HistosynthError(f"MLflow run '{run_id}' not found ({e.__class__.__name__})", "pass the run id of a training run on this tracking server (MLFLOW_TRACKING_URI)") from e
    ts = int(time.time() * 1000)
    ext = record["extractor"]["name"]
    client.log_batch(run_id, metrics=[Metric(metric_key(record["split"], ext, k), v, ts, 0) for k, v in record["metrics"].items()])
    client.set_tag(run_id, f"eval.{record['split']}.{ext}.comparable_with_published", str(record["comparable_with_published"]).lower())
    stamp = record["timestamp"].replace(":", "").replace("+0000", "Z")
    client.log_text(run_id, json.dumps(record, indent=2, sort_keys=True, default=str), f"evaluations/{stamp}-{record['split']}-{ext}.json")
    tstr = record.get("tstr") or {}
    extra = [Metric(f"tstr/{setting.replace('+', '_')}/{k}_{stat}", v[stat], ts, 0) for setting, res in tstr.get("settings", {}).items() for k, v in res.items() if isinstance(v, dict) and "mean" in v for stat in ("mean", "std")]
    if extra:
        client.log_batch(run_id, metrics=extra)
    files = [Path(d["path"]) for d in (record.get("diagnostics") or {}).values() if d.get("path")] + [Path(p) for p in (record.get("report") or {}).values()]
    for f in files:
        if f.is_file():
            client.log_artifact(run_id, str(f), f"evaluations/{stamp}-{record['split']}-{ext}")


def evaluate_generator(
    bundle_path: str | Path,
    real_root: str | Path,
    config: EvalConfig | None = None,
    *,
    out_jsonl: str | Path | None = None,
    mlflow_run_id: str | None = None,
    tracking_uri: str = "",
    artifacts_dir: str | Path | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate a generator bundle against a real split; returns the result record (also appended/logged).

    ``config`` says how (every option and its default: :class:`~histosynth.evaluation.config.EvalConfig`);
    ``options``, named like its fields, override it (``split="val", n_fake=20``); an unknown name is an error.

    Beyond the metrics: ``cmmd_extractor`` computes ``cmmd`` on another extractor's features (e.g.
    ``clip-vit-l14-336`` for the paper's CLIP-CMMD) from the same generated images; ``tstr`` "on" runs the
    downstream protocol (``histosynth.evaluation.downstream``, options ``tstr_options``; refuses unconditional generators),
    "auto" runs it for class-conditional ones and records why it was skipped otherwise; ``tsne`` / ``knn`` (K)
    write the diagnostics PNGs; ``report`` writes report.md/.html. Files go to ``artifacts_dir`` (default: an
    ``eval-<time>`` folder beside ``out_jsonl``, else under the state folder) and, with a run id, to MLflow.
    """
    t_start = time.perf_counter()
    cfg = EvalConfig.from_dict(options, base=config)
    split, seed, device, batch_size, n_real = cfg.split, cfg.seed, cfg.device, cfg.batch_size, cfg.n_real or None
    names = M.resolve_names(cfg.metrics)
    opts = M.options(**{"seed": int(seed), "device": device, **cfg.metric_options})
    dev = resolve_device(device, "--device")
    tstr_cfg = None
    if cfg.tstr != "off":
        from histosynth.evaluation.downstream.tstr import TstrConfig

        tstr_cfg = TstrConfig.from_dict({"seed": int(seed), "device": device, **cfg.tstr_options})
    store = open_split(real_root, split)
    with phase(progress, f"load {cfg.extractor}"):
        ext = get_extractor(cfg.extractor, dev, cfg.weights or None)
    want_logits = any(n in M.LOGIT_METRICS for n in names)
    if want_logits and not ext.has_logits:
        raise HistosynthError(
            f"the Inception Score needs classifier logits, and extractor '{ext.name}' has none",
            "the FID Inception (fid-helper default_1.pt) is a pool-features-only network: drop 'is' from the metrics",
        )

    r_feats, r_stats, idx, cache_info = real_features(store, split, ext, n_real=n_real, seed=seed, batch_size=batch_size, refresh=cfg.refresh_cache, progress=progress)
    n_fake = cfg.n_fake or len(idx)
    if n_fake < 2:
        raise HistosynthError(f"n_fake={n_fake} is too small", "generate at least 2 images (hundreds for stable numbers)")

    bundle = Path(bundle_path)
    bundle_file = bundle / BUNDLE_FILENAME if bundle.is_dir() else bundle
    gen, meta = load_generator(bundle_file, dev)
    spec = meta["spec"]
    conditional = int(spec.get("num_classes", 0) or 0) > 0
    if cfg.tstr == "on" and not conditional:
        from histosynth.evaluation.downstream.tstr import generator_source

        generator_source(gen, spec, list(meta["classes"]), store.classes, 0, dev, seed)  # raises the explanation
    class_ids = class_allocation(store.labels[idx], store.classes, list(meta["classes"]), n_fake, seed) if conditional else None
    separate_cmmd = "cmmd" in names and bool(cfg.cmmd_extractor) and cfg.cmmd_extractor != ext.name
    keep: list[np.ndarray] | None = [] if (cfg.knn or separate_cmmd) else None
    t0 = time.perf_counter()
    f_feats, f_logits = fake_features(gen, spec, ext, n_fake, class_ids=class_ids, seed=seed, batch_size=batch_size, device=dev, want_logits=want_logits, progress=progress, images_out=keep)
    t_fake = time.perf_counter() - t0
    f_images = np.concatenate(keep) if keep else None

    t0 = time.perf_counter()
    handle = None
    if "ppl" in names:
        from histosynth.evaluation.metrics.ppl import GeneratorHandle

        ppl_ids = class_allocation(store.labels[idx], store.classes, list(meta["classes"]), int(opts["ppl_samples"]), seed) if conditional else None
        handle = GeneratorHandle(fn=lambda z, y: gen(z, y) if y is not None else gen(z), latent_dim=int(spec.get("latent_dim", 100)), device=dev, class_ids=ppl_ids)
    with phase(progress, "metrics " + ",".join(names)):
        values, details = M.compute([n for n in names if not (separate_cmmd and n == "cmmd")], r_feats, f_feats, fake_logits=f_logits, real_stats=r_stats, generator=handle, progress=progress, **opts)
    if separate_cmmd:
        c_ext = get_extractor(cfg.cmmd_extractor, dev)
        c_real, _, _, _ = real_features(store, split, c_ext, n_real=n_real, seed=seed, batch_size=batch_size, refresh=cfg.refresh_cache, progress=progress)
        c_fake = c_ext.extract(f_images, batch_size=batch_size)
        c_vals, c_details = M.compute(["cmmd"], c_real, c_fake, **opts)
        values = {**values, **c_vals}
        details.update({k: v for k, v in c_details.items() if k != "seconds"})
    per_class_notes: list[str] = []
    if conditional and cfg.per_class_fid and "fid" in names:
        per_class, per_class_notes = _per_class_fid(r_feats, np.asarray(store.classes)[store.labels[idx]], f_feats, np.asarray(meta["classes"])[class_ids], list(meta["classes"]), opts)
        values.update(per_class)
    if "cmmd" in names:
        from histosynth.evaluation.metrics import cmmd as cmmd_metric

        details["cmmd_features"] = cmmd_metric.label(cfg.cmmd_extractor if separate_cmmd else ext.name)
    t_metrics = time.perf_counter() - t0

    notes = []
    if not ext.comparable:
        notes.append(f"{ext.note or 'not comparable with published numbers'} (extractor {ext.name})")
    if min(len(idx), n_fake) < 2048 and "fid" in names:
        notes.append(f"FID on {min(len(idx), n_fake)} samples (< 2048 = feature dim): biased upwards, compare only at equal sample sizes")
    notes += per_class_notes
    if "cmmd" in names and "NOT CLIP-CMMD" in details["cmmd_features"]:
        notes.append(f"cmmd is {details['cmmd_features']}")
    if "ppl" in names:
        d = details["ppl_setup"]["distance"]
        notes.append(f"ppl uses the {d['name']} distance ({d['note']}); {details['ppl_setup']['samples']} pairs")
    if "kid" in names and details.get("kid_subset_size") == len(idx) == n_fake:
        notes.append("KID subsets are the whole sets here (n_real = n_fake = subset size): kid_std is 0 by construction, not a confidence")
    record: dict[str, Any] = {
        "format": RECORD_FORMAT,
        "timestamp": _now(),
        "model": {
            "bundle": str(bundle_file),
            "sha256": sha256_file(bundle_file),
            "arch": spec.get("arch"),
            "image_size": spec.get("image_size"),
            "conditional": conditional,
            "classes": list(meta["classes"]),
        },
        "extractor": ext.describe(),
        "real": {"store": str(store.root), "split": split, "manifest_hash": store.manifest_hash, "classes": store.classes, "patch_size": list(store.patch_size), "subset": n_real is not None and n_real < len(store)},
        "split": split,
        "n_real": int(len(idx)),
        "n_fake": int(n_fake),
        "fake_class_counts": ({c: int((class_ids == i).sum()) for i, c in enumerate(meta["classes"])} if conditional else None),
        "seed": int(seed),
        "metrics": values,
        "details": details,
        "options": {k: v for k, v in opts.items() if k not in ("device",)},
        "comparable_with_published": bool(ext.comparable),
        "notes": notes,
        "cache": cache_info,
        "device": str(dev),
        "seconds": {"real_features": cache_info["seconds"], "fake_features": t_fake, "metrics": t_metrics, "total": time.perf_counter() - t_start},
        "histosynth_version": histosynth.__version__,
        "run_id": mlflow_run_id,
    }
    if tstr_cfg is not None or cfg.tsne or cfg.knn or cfg.report:
        art = Path(artifacts_dir) if artifacts_dir else _default_artifacts_dir(out_jsonl, record)
        record["artifacts_dir"] = str(art)
        if tstr_cfg is not None:
            record["tstr"] = _run_tstr(bundle_file, real_root, tstr_cfg, conditional, progress)
        diag: dict[str, Any] = {}
        if cfg.tsne:
            from histosynth.evaluation.diagnostics import tsne_plot

            with phase(progress, "t-SNE plot"):
                diag["tsne"] = tsne_plot(r_feats, f_feats, art / "tsne.png", seed=seed, real_labels=store.labels[idx], classes=store.classes, title=f"t-SNE of {ext.name} features: {len(idx)} real ({split}) vs {n_fake} synthetic")
        if cfg.knn:
            from histosynth.evaluation.diagnostics import memorization_check

            with phase(progress, f"{cfg.knn}-nearest-real-neighbour grid"):
                diag["knn"] = memorization_check(f_feats, f_images, r_feats, store.images[idx], art / "knn.png", k=int(cfg.knn), rows=int(cfg.knn_rows), seed=seed, device=device)
            diag["knn"]["features"] = ext.name
        if diag:
            record["diagnostics"] = diag
        record["seconds"]["total"] = time.perf_counter() - t_start
        if cfg.report:
            from histosynth.evaluation.report import write_report

            record["report"] = {k: str(v) for k, v in write_report([record], art).items()}
    if out_jsonl:
        append_jsonl(out_jsonl, record)
    if mlflow_run_id:
        with phase(progress, "log to MLflow"):
            log_to_mlflow(mlflow_run_id, record, tracking_uri)
    return record


def _per_class_fid(real: np.ndarray, real_classes: np.ndarray, fake: np.ndarray, fake_classes: np.ndarray, classes: list[str], opts: dict[str, Any]) -> tuple[dict[str, float], list[str]]:
    """``fid/<class>`` (class names made safe for MLflow keys) and ``fid_class_mean``, with notes for the classes
    too small to score and on the per-class sample sizes (each class's FID is more biased than the overall one)."""
    from histosynth.gan.rl_eo import safe_name

    values, skipped = M.fid.per_class(real, real_classes, fake, fake_classes, classes, **opts)
    out = {f"fid/{safe_name(c)}": v for c, v in values.items()}
    notes = [f"no FID for class '{c}': {why} (generate more images, --n, or evaluate on a larger split)" for c, why in skipped.items()]
    if values:
        out["fid_class_mean"] = float(np.mean(list(values.values())))
        sizes = [int(min((real_classes == c).sum(), (fake_classes == c).sum())) for c in values]
        notes.append(f"per-class FID on {min(sizes)}-{max(sizes)} samples per class: more biased than the overall FID, compare only at equal sample sizes; fid_class_mean is their unweighted mean")
    return out, notes


def _default_artifacts_dir(out_jsonl: str | Path | None, record: dict[str, Any]) -> Path:
    from histosynth import defaults

    stamp = record["timestamp"].replace(":", "").replace("+0000", "Z")
    base = Path(out_jsonl).parent if out_jsonl else defaults.paths().home / "evaluations"
    return base / f"eval-{stamp}-{record['split']}-{record['extractor']['name']}"


def _run_tstr(bundle_file: Path, real_root: str | Path, cfg: Any, conditional: bool, progress: Progress | None) -> dict[str, Any]:
    """TSTR for a conditional generator; for an unconditional one (mode auto) the reason it was skipped."""
    if not conditional:
        return {"skipped": "unconditional generator: its samples carry no class labels, so a classifier cannot be trained on them (train with data.conditional=true)"}
    from histosynth.evaluation.downstream.tstr import tstr_for_bundle

    return tstr_for_bundle(bundle_file, real_root, cfg, progress=progress)
