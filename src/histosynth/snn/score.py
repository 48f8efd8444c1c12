"""Using a trained MFT-SNN: pair similarity, pair-classification metrics, and the K-most-similar search of a
query image against the real patches (the paper's duplicate / memorisation check) over cached embeddings."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from histosynth import defaults
from histosynth.snn.mft_snn import MFTSNN, similarity_from_embeddings
from histosynth.snn.pairs import PairSet, to_model_input


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties counting half."""
    from scipy.stats import rankdata

    s, y = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold (midpoint between sorted scores) that maximises accuracy of ``score >= t`` -> similar."""
    s = np.sort(np.unique(np.asarray(scores, np.float64)))
    cands = np.concatenate([[s[0] - 1e-6], (s[:-1] + s[1:]) / 2, [s[-1] + 1e-6]]) if len(s) else np.array([0.5])
    y = np.asarray(labels).astype(bool)
    accs = [((np.asarray(scores) >= t) == y).mean() for t in cands]
    return float(cands[int(np.argmax(accs))])


def pair_metrics(scores: np.ndarray, labels: np.ndarray, levels: np.ndarray, threshold: float | None = None) -> dict[str, float]:
    """ROC-AUC overall and per dissimilarity level, accuracy at ``threshold`` (None: the best one on these pairs)."""
    scores, labels, levels = np.asarray(scores), np.asarray(labels), np.asarray(levels)
    t = best_threshold(scores, labels) if threshold is None else float(threshold)
    out = {"auc": roc_auc(scores, labels), "accuracy": float(((scores >= t) == labels.astype(bool)).mean()), "threshold": t, "pairs": float(len(scores))}
    for lvl, name in ((1, "within"), (2, "across")):
        keep = (levels == 0) | (levels == lvl)
        out[f"auc_{name}"] = roc_auc(scores[keep], labels[keep])
    out["sim_similar"] = float(scores[labels == 1].mean()) if (labels == 1).any() else float("nan")
    out["sim_dissimilar"] = float(scores[labels == 0].mean()) if (labels == 0).any() else float("nan")
    return out


@torch.no_grad()
def pair_similarities(model: MFTSNN, pairs: PairSet, size: int, device: torch.device, batch_size: int = 64, rows: np.ndarray | None = None) -> np.ndarray:
    """Similarity in [0, 1] of each (augmented) pair, in eval mode."""
    was = model.training
    model.eval()
    rows = np.arange(len(pairs)) if rows is None else np.asarray(rows)
    out = []
    try:
        for i in range(0, len(rows), batch_size):
            xa, xb, _ = pairs.batch(rows[i : i + batch_size], size, device)
            e = model.embed(torch.cat([xa, xb]))
            ea, eb = e.chunk(2)
            out.append(similarity_from_embeddings(ea, eb).cpu().numpy())
    finally:
        model.train(was)
    return np.concatenate(out) if out else np.zeros(0)


@torch.no_grad()
def embed_images(model: MFTSNN, images_uint8_nhwc: np.ndarray | torch.Tensor, device: torch.device, batch_size: int = 64, progress=None) -> np.ndarray:
    """L2-normalised embeddings (N, emb_dim) float32 of uint8 NHWC images at the model's image size."""
    model.eval()
    out = []
    n = len(images_uint8_nhwc)
    for i in range(0, n, batch_size):
        chunk = torch.as_tensor(np.array(images_uint8_nhwc[i : i + batch_size], dtype=np.uint8))  # a copy: stores are read-only memory maps
        e = model.embed(to_model_input(chunk, model.image_size, device)).float()
        out.append(torch.nn.functional.normalize(e, dim=1).cpu().numpy())
        if progress:
            progress(len(chunk))
    return np.concatenate(out) if out else np.zeros((0, int(model.spec.get("emb_dim", 128))), np.float32)


def bundle_key(bundle_path: str | Path) -> str:
    from histosynth.files.weights import sha256_cached

    return sha256_cached(bundle_path)


def cached_embeddings(model: MFTSNN, bundle_sha: str, store, device: torch.device, progress: bool = False) -> np.ndarray:
    """Embeddings of every patch of ``store``, cached under ``$HISTOSYNTH_CACHE/snn-embeddings`` by (bundle sha256,
    store manifest hash): a search against the same real set never re-embeds it."""
    cache = defaults.paths().cache / "snn-embeddings" / f"{bundle_sha[:16]}-{store.manifest_hash[:16]}.npy"
    if cache.is_file():
        emb = np.load(cache)
        if len(emb) == len(store):
            return emb
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(store), desc="embedding real patches", unit="img")
    emb = embed_images(model, store.images, device, progress=bar.update if bar else None)
    if bar:
        bar.close()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, emb)
    tmp.replace(cache)
    return emb


@dataclass
class Match:
    index: int
    similarity: float
    record: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "similarity": self.similarity, **{k: self.record.get(k) for k in ("class", "slide", "region", "x", "y")}}


def search(query_emb: np.ndarray, bank: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows of ``bank`` by cosine (both L2-normalised) for each query -> (indices (Q, k), similarity in [0, 1])."""
    cos = np.asarray(query_emb, np.float64) @ np.asarray(bank, np.float64).T
    k = min(k, bank.shape[0])
    idx = np.argsort(-cos, axis=1, kind="stable")[:, :k]
    return idx, np.clip((1.0 + np.take_along_axis(cos, idx, axis=1)) / 2.0, 0.0, 1.0)


def sha_of(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]
