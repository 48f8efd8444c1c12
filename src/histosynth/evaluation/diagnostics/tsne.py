"""t-SNE of real vs synthetic features (the papers' figure): PCA to 50 dims first, then sklearn t-SNE.

PCA (to ``min(50, n - 1, dim)`` dims, on the standardised union of both sets) removes noise directions and
makes t-SNE tractable, as the papers do. Perplexity is ``min(30, (n - 1) / 3)`` so small sets still work.
The figure is a fixed-size PNG (``size_px``); well-mixed clouds mean the generator covers the real feature
distribution, separate islands mean a gap (or a mode the generator misses).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from histosynth.errors import HistosynthError

DPI = 100


def embed(real: np.ndarray, fake: np.ndarray, *, seed: int = 0, pca_dims: int = 50, perplexity: float | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """-> (2-d embedding of the stacked [real; fake] rows, info {pca_dims, explained_variance, perplexity})."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.concatenate([np.asarray(real, np.float64), np.asarray(fake, np.float64)])
    n = len(x)
    if len(real) < 2 or len(fake) < 2 or n < 5:
        raise HistosynthError(f"t-SNE needs a few samples per set (got {len(real)} real, {len(fake)} fake)", "evaluate with more images (hundreds for a readable plot)")
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    dims = int(min(pca_dims, n - 1, x.shape[1]))
    pca = PCA(n_components=dims, random_state=seed)
    z = pca.fit_transform(x)
    perp = float(perplexity if perplexity is not None else min(30.0, (n - 1) / 3.0))
    emb = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed, max_iter=1000).fit_transform(z)
    return emb, {"pca_dims": dims, "pca_explained_variance": float(pca.explained_variance_ratio_.sum()), "perplexity": perp, "n_real": int(len(real)), "n_fake": int(len(fake))}


def plot(
    real: np.ndarray,
    fake: np.ndarray,
    path: str | Path,
    *,
    seed: int = 0,
    title: str = "",
    size_px: tuple[int, int] = (800, 800),
    real_labels: np.ndarray | None = None,
    classes: list[str] | None = None,
) -> dict[str, Any]:
    """Write the t-SNE scatter to ``path`` (PNG of exactly ``size_px``); -> info incl. the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    emb, info = embed(real, fake, seed=seed)
    er, ef = emb[: len(real)], emb[len(real) :]
    fig = plt.figure(figsize=(size_px[0] / DPI, size_px[1] / DPI), dpi=DPI)
    ax = fig.add_axes((0.06, 0.06, 0.9, 0.86))
    if real_labels is not None and classes:
        for ci, c in enumerate(classes):
            sel = np.asarray(real_labels) == ci
            if sel.any():
                ax.scatter(er[sel, 0], er[sel, 1], s=10, alpha=0.6, marker="o", label=f"real: {c}")
    else:
        ax.scatter(er[:, 0], er[:, 1], s=10, alpha=0.6, c="tab:blue", marker="o", label="real")
    ax.scatter(ef[:, 0], ef[:, 1], s=14, alpha=0.7, c="black", marker="x", label="synthetic")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title or f"t-SNE (PCA {info['pca_dims']}d, perplexity {info['perplexity']:.0f}): {len(real)} real vs {len(fake)} synthetic", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return {**info, "path": str(path), "size_px": list(size_px)}
