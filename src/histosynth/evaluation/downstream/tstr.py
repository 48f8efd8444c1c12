"""Train on synthetic, test on real (TSTR), with real-only and real+synthetic baselines, in k-fold CV.

Protocol (the primary paper's downstream classification set-up, extended to k-fold CV). The real pool (by default every split of the real store) is cut into
``folds`` folds; for each fold, a fresh classifier is trained per setting and tested on that real fold:

* ``real``            trained on the real patches of the other folds;
* ``synthetic``       trained only on generated patches (TSTR), as many per class as the real training folds hold
                      (or ``n_synth_per_class``), drawn from a class-conditional generator;
* ``real+synthetic``  both (the augmentation experiment).

Folds are ``StratifiedGroupKFold`` over source groups (slide + region, as ``data split`` groups patches), so
neighbouring patches of one region never sit on both sides; when there are fewer groups than folds this is
impossible and plain ``StratifiedKFold`` is used, with a note in the result. Per setting: mean and std (over folds,
ddof=0) of accuracy, macro precision, macro recall, macro F1 (over the classes present in the fold's test set) and
per-class F1 (classes absent from a test fold do not count for that fold).

An unconditional generator has no labels for its samples, so TSTR refuses it (labelling its samples with a
classifier trained on real data would measure that classifier, not the generator).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from histosynth.errors import DataError, HistosynthError

SETTINGS = ("real", "synthetic", "real+synthetic")
Progress = Callable[[str, int, int], None]
# (train indices into the real pool, wanted count per class id) -> (uint8 NHWC images, class ids)
SynthSource = Callable[[np.ndarray, dict[int, int], int], tuple[np.ndarray, np.ndarray]]
_MEAN = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
_STD = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)


@dataclass
class TstrConfig:
    """Defaults are the paper's classifier set-up (ResNet-152, last 16 layers, FC 1024, Adam 1e-5, StepLR 7/0.1,
    10 epochs) with 5 folds; the pipeline and tests use cheaper values."""

    backbone: str = "resnet152"
    init: str = "imagenet"  # imagenet | random
    weights: str | None = None
    trainable_layers: int = 16  # -1: all
    head_hidden: int = 1024  # 0: a single linear layer
    epochs: int = 10
    lr: float = 1e-5
    step_size: int = 7
    gamma: float = 0.1
    batch_size: int = 32
    folds: int = 5
    input_size: int = 0  # 0: the real patch size
    n_synth_per_class: int = 0  # 0: as many as each class has in the real training folds
    max_real: int = 0  # 0: the whole pool; else a seeded, stratified subset (for quick runs)
    settings: list[str] = field(default_factory=lambda: list(SETTINGS))
    augment: bool = True  # random horizontal/vertical flips
    splits: list[str] = field(default_factory=lambda: ["train", "val", "test"])
    seed: int = 0
    device: str = "auto"

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TstrConfig:
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise HistosynthError(f"unknown TSTR option(s) {unknown}", f"known: {', '.join(cls.__dataclass_fields__)}")
        for k in ("settings", "splits"):
            if isinstance(d.get(k), str):
                d[k] = [s.strip() for s in d[k].split(",") if s.strip()]
        cfg = cls(**d)
        bad = [s for s in cfg.settings if s not in SETTINGS]
        if bad or not cfg.settings:
            raise HistosynthError(f"unknown TSTR setting(s) {bad or cfg.settings}", f"use some of: {', '.join(SETTINGS)}")
        if cfg.folds < 2:
            raise HistosynthError(f"TSTR folds={cfg.folds}", "use at least 2 folds (the papers use 5)")
        return cfg


def make_folds(labels: np.ndarray, groups: np.ndarray | None, k: int, seed: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """-> ([(train idx, test idx)] * k, {method, notes})."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    n_cls = np.bincount(labels)
    if (n_cls[n_cls > 0] < 2).any() or len(labels) < k:
        raise DataError(f"too few real patches for {k}-fold CV (per-class counts {n_cls.tolist()})", "use fewer folds or more real data")
    notes: list[str] = []
    x = np.zeros(len(labels))
    if groups is not None and len(np.unique(groups)) >= k:
        folds = list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(x, labels, groups))
        if any(len(te) == 0 for _, te in folds):
            raise DataError("a CV fold got no test patches", "use fewer folds")
        method = "stratified-group (slide+region)"
        thin = [int(c) for c in np.unique(labels) if len(np.unique(groups[labels == c])) < k]
        if thin:
            notes.append(f"class ids {thin} have fewer source groups than folds: they are missing from some test folds")
    else:
        folds = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(x, labels))
        method = "stratified (no grouping possible)"
        notes.append("fewer source groups than folds: patches of one region may fall in train and test (optimistic real scores)")
    return folds, {"method": method, "notes": notes}


def _prep(images: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
    """uint8 NHWC -> ImageNet-normalised float NCHW at ``size`` (bilinear, antialias when shrinking)."""
    x = images.to(device).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)
    return (x - _MEAN.to(device)) / _STD.to(device)


def fit_predict(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    num_classes: int,
    cfg: TstrConfig,
    device: torch.device,
    seed: int,
    progress: Callable[[], None] | None = None,
) -> tuple[np.ndarray, dict]:
    """Train a fresh classifier on (train_x, train_y) and predict test_x -> (predicted ids, classifier description)."""
    from histosynth.evaluation.downstream.backbones import build_classifier

    size = cfg.input_size or train_x.shape[1]
    model, desc = build_classifier(cfg.backbone, num_classes, init=cfg.init, weights=cfg.weights, trainable_layers=cfg.trainable_layers, head_hidden=cfg.head_hidden, seed=seed)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    xs, ys = torch.from_numpy(np.ascontiguousarray(train_x)), torch.from_numpy(np.asarray(train_y, dtype=np.int64))
    g = torch.Generator().manual_seed(seed)
    bs = max(1, int(cfg.batch_size))
    for _ in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(xs), generator=g)
        for i in range(0, len(xs), bs):
            sel = order[i : i + bs]
            if len(sel) < 2 and len(xs) > 1:  # BatchNorm cannot train on one sample
                continue
            x = _prep(xs[sel], size, device)
            if cfg.augment:
                flip_h, flip_v = torch.rand(2, generator=g).tolist()
                x = x.flip(3) if flip_h < 0.5 else x
                x = x.flip(2) if flip_v < 0.5 else x
            loss = F.cross_entropy(model(x), ys[sel].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        if progress:
            progress()
    _recalibrate_bn(model, xs, size, device, bs)
    model.eval()
    preds = []
    tx = torch.from_numpy(np.ascontiguousarray(test_x))
    with torch.inference_mode():
        for i in range(0, len(tx), bs * 2):
            preds.append(model(_prep(tx[i : i + bs * 2], size, device)).argmax(1).cpu().numpy())
    return np.concatenate(preds) if preds else np.empty(0, np.int64), desc


@torch.no_grad()
def _recalibrate_bn(model: torch.nn.Module, xs: torch.Tensor, size: int, device: torch.device, bs: int) -> None:
    """Running statistics of the *trained* BatchNorm layers recomputed on the training set under the final weights
    (cumulative average). Short trainings (few steps, momentum 0.1) otherwise leave them far from the batch
    statistics the weights were fitted with, and eval-mode predictions collapse. Frozen layers keep theirs."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) and m.weight is not None and m.weight.requires_grad]
    if not bns or len(xs) < 2:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for i in range(0, len(xs), bs):
        if len(xs[i : i + bs]) > 1:
            model(_prep(xs[i : i + bs], size, device))
    for m, mom in zip(bns, saved):
        m.momentum = mom


def fold_scores(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    present = sorted(np.unique(y_true).tolist())
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=present, average="macro", zero_division=0)
    per = f1_score(y_true, y_pred, labels=present, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision_macro": float(p),
        "recall_macro": float(r),
        "f1_macro": float(f),
        "f1_per_class": {classes[c]: float(v) for c, v in zip(present, per)},
        "n_test": int(len(y_true)),
    }


def summarize(per_fold: list[dict[str, Any]], classes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro"):
        v = np.array([f[key] for f in per_fold])
        out[key] = {"mean": float(v.mean()), "std": float(v.std())}
    out["f1_per_class"] = {}
    for c in classes:
        v = np.array([f["f1_per_class"][c] for f in per_fold if c in f["f1_per_class"]])
        if len(v):
            out["f1_per_class"][c] = {"mean": float(v.mean()), "std": float(v.std()), "folds": int(len(v))}
    out["folds"] = per_fold
    return out


def run_tstr(
    images: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    synth: SynthSource | None,
    cfg: TstrConfig,
    *,
    groups: np.ndarray | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The protocol on an in-memory real pool (uint8 NHWC ``images``, class ids ``labels``).

    ``synth(train_idx, {class id: count}, fold) -> (images, class ids)`` supplies the synthetic training set of
    each fold (None only when no setting needs it)."""
    from histosynth.device import resolve_device

    t0 = time.perf_counter()
    dev = resolve_device(cfg.device, "--device")
    needs_synth = any(s != "real" for s in cfg.settings)
    if needs_synth and synth is None:
        raise HistosynthError("the synthetic TSTR settings need a synthetic source", "pass a class-conditional generator, or settings=real")
    labels = np.asarray(labels, dtype=np.int64)
    folds, split_info = make_folds(labels, groups, cfg.folds, cfg.seed)
    per_setting: dict[str, list[dict]] = {s: [] for s in cfg.settings}
    total, done = len(folds) * len(cfg.settings) * cfg.epochs, 0
    classifier: dict = {}
    synth_counts: list[dict[str, int]] = []

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress("tstr epochs", done, total)

    for fi, (tr, te) in enumerate(folds):
        counts = {int(c): int((labels[tr] == c).sum()) for c in np.unique(labels[tr])}
        if cfg.n_synth_per_class:
            counts = {c: int(cfg.n_synth_per_class) for c in counts}
        sx, sy = synth(tr, counts, fi) if needs_synth else (None, None)
        if needs_synth:
            synth_counts.append({classes[c]: int((sy == c).sum()) for c in np.unique(sy)})
        for setting in cfg.settings:
            if setting == "real":
                x, y = images[tr], labels[tr]
            elif setting == "synthetic":
                x, y = sx, sy
            else:
                x, y = np.concatenate([np.asarray(images[tr]), sx]), np.concatenate([labels[tr], sy])
            pred, classifier = fit_predict(np.asarray(x), y, np.asarray(images[te]), len(classes), cfg, dev, cfg.seed + fi, tick)
            per_setting[setting].append({"fold": fi, "n_train": int(len(y)), **fold_scores(labels[te], pred, classes)})
    return {
        "protocol": f"{cfg.folds}-fold CV; train per setting, test on the real held-out fold",
        "folds": cfg.folds,
        "split": split_info,
        "classes": list(classes),
        "n_real": int(len(labels)),
        "real_class_counts": {c: int((labels == i).sum()) for i, c in enumerate(classes)},
        "synthetic_class_counts": synth_counts,
        "classifier": classifier,
        "config": asdict(cfg),
        "settings": {s: summarize(v, classes) for s, v in per_setting.items()},
        "device": str(dev),
        "seconds": time.perf_counter() - t0,
    }


def real_pool(real_root: str | Path, splits: list[str], max_real: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], dict[str, Any]]:
    """Images, labels, source groups and classes of the named splits of ``real_root`` (those that exist)."""
    from histosynth.data.split import group_key
    from histosynth.data.store import MANIFEST, PatchStore

    root = Path(real_root)
    stores = [PatchStore(root / s) for s in splits if (root / s / MANIFEST).is_file()]
    if not stores and (root / MANIFEST).is_file():
        stores = [PatchStore(root)]
    if not stores:
        raise DataError(f"no patch store for splits {splits} under '{root}'", "build the splits first (histosynth data split / dvc repro) or point --real at them")
    classes = stores[0].classes
    for s in stores[1:]:
        if s.classes != classes:
            raise DataError(f"splits under '{root}' have different class lists ({classes} vs {s.classes})", "rebuild the splits from one patch store")
    images = np.concatenate([np.asarray(s.images) for s in stores])
    labels = np.concatenate([s.labels for s in stores])
    groups = np.array([group_key(r, "region") for s in stores for r in s.records])
    if max_real and max_real < len(labels):
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(np.arange(len(labels)), train_size=int(max_real), stratify=labels, random_state=seed)
        keep = np.sort(keep)
        images, labels, groups = images[keep], labels[keep], groups[keep]
    info = {"stores": [str(s.root) for s in stores], "manifest_hashes": [s.manifest_hash for s in stores], "subset": bool(max_real and max_real < sum(len(s) for s in stores))}
    return images, labels, groups, classes, info


def generator_source(gen: torch.nn.Module, spec: dict[str, Any], gen_classes: list[str], real_classes: list[str], size: int, device: torch.device, seed: int, batch_size: int = 64) -> SynthSource:
    """Samples of a class-conditional generator, labelled in the real class ids, resized to ``size`` (uint8 NHWC)."""
    from histosynth.evaluation.features.base import to_uint8

    if not int(spec.get("num_classes", 0) or 0):
        raise HistosynthError(
            "TSTR needs a class-conditional generator: this bundle is unconditional, so its samples carry no labels to train a classifier on",
            "train with data.conditional=true (histosynth train --set data.conditional=true), or leave TSTR out (--tstr off, or --tstr auto to skip it for unconditional generators)",
        )
    missing = [c for c in real_classes if c not in gen_classes]
    if missing:
        raise DataError(f"the real pool has classes {missing} that the generator does not know ({gen_classes})", "evaluate against data with the generator's classes")
    latent = int(spec.get("latent_dim", 100))

    @torch.inference_mode()
    def sample(train_idx: np.ndarray, counts: dict[int, int], fold: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.concatenate([np.full(n, c, dtype=np.int64) for c, n in sorted(counts.items()) if n > 0])
        g = torch.Generator().manual_seed(int(seed) * 1000 + fold)
        out = np.empty((len(ids), size, size, 3), dtype=np.uint8)
        for i in range(0, len(ids), batch_size):
            real_ids = ids[i : i + batch_size]
            z = torch.randn(len(real_ids), latent, generator=g).to(device)
            y = torch.as_tensor([gen_classes.index(real_classes[c]) for c in real_ids], device=device)
            imgs = gen(z, y).float()
            if imgs.shape[-1] != size:
                imgs = F.interpolate(imgs, size=(size, size), mode="bilinear", align_corners=False, antialias=imgs.shape[-1] > size)
            out[i : i + len(real_ids)] = to_uint8(imgs).permute(0, 2, 3, 1).cpu().numpy()
        return out, ids

    return sample


def tstr_for_bundle(bundle: str | Path, real_root: str | Path, cfg: TstrConfig, *, progress: Progress | None = None) -> dict[str, Any]:
    """TSTR of a generator bundle against the real pool of ``real_root`` (splits ``cfg.splits``)."""
    from histosynth.gan.bundle import load_generator
    from histosynth.device import resolve_device

    dev = resolve_device(cfg.device, "--device")
    gen, meta = load_generator(bundle, dev)
    images, labels, groups, classes, info = real_pool(real_root, cfg.splits, cfg.max_real, cfg.seed)
    source = generator_source(gen, meta["spec"], list(meta["classes"]), classes, images.shape[1], dev, cfg.seed)
    result = run_tstr(images, labels, classes, source, cfg, groups=groups, progress=progress)
    result["real_pool"] = info
    return result
