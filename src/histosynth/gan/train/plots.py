"""Sample grids (fixed noise) and loss curves as PNG files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch


def _pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    _pyplot().close(fig)
    return path


@torch.no_grad()
def sample_grid(generator: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None, path: str | Path, amp=None) -> Path:
    """Generate from fixed ``z`` (and class ids ``y``) in eval mode and save a grid (one row per 8 images).

    Eval mode uses the batch-norm running statistics (what a served generator does) and leaves the
    training state untouched, so sampling never changes a run's trajectory.
    """
    was_training = generator.training
    generator.eval()
    try:
        ctx = amp.autocast() if amp is not None else torch.autocast("cpu", enabled=False)
        with ctx:
            imgs = generator(z, y) if y is not None else generator(z)
    finally:
        generator.train(was_training)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nrow = max(1, int(math.ceil(math.sqrt(z.shape[0]))))
    return save_grid(imgs, path, nrow)


def save_grid(imgs: torch.Tensor, path: str | Path, nrow: int, padding: int = 2) -> Path:
    """Save NCHW images in [-1, 1] as a PNG grid of ``nrow`` columns on black ``padding``-pixel borders: the layout
    and rounding of torchvision's ``save_image(normalize=True, value_range=(-1, 1))``, without torchvision (the CPU
    component image has no torchvision build that loads, and training must not need one)."""
    from PIL import Image

    x = ((imgs.detach().float().cpu().clamp(-1.0, 1.0) + 1.0) / 2.0).mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
    n, c, h, w = x.shape
    padding = padding if n > 1 else 0  # a single image is saved as it is
    cols = min(nrow, n)
    rows = int(math.ceil(n / cols))
    canvas = torch.zeros(c, rows * (h + padding) + padding, cols * (w + padding) + padding, dtype=torch.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        top, left = r * (h + padding) + padding, k * (w + padding) + padding
        canvas[:, top : top + h, left : left + w] = x[i]
    arr = canvas.permute(1, 2, 0).numpy()
    Image.fromarray(arr[..., 0] if c == 1 else arr).save(path)
    return Path(path)


def loss_curve(history: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Plot loss_d / loss_g (left axis) and d_real / d_fake (right) against the step."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    steps = [h["step"] for h in history]
    for key, style in (("loss_d", "-"), ("loss_g", "-")):
        ax1.plot(steps, [h.get(key, float("nan")) for h in history], style, label=key)
    ax1.set_xlabel("step")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    for key in ("d_real", "d_fake"):
        ax2.plot(steps, [h.get(key, float("nan")) for h in history], label=key)
    ax2.set_xlabel("step")
    ax2.set_ylabel("mean sigmoid(D)")
    ax2.set_ylim(0, 1)
    ax2.legend()
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def reward_curve(history: list[dict[str, Any]], classes: list[str], path: str | Path, title: str = "") -> Path:
    """RL-EO reward against the step: the overall ``rl_eo/reward`` and one line per (real) class."""
    from histosynth.gan.rl_eo import safe_name

    plt = _pyplot()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    steps = [h["step"] for h in history]
    ax.plot(steps, [h.get("rl_eo/reward", float("nan")) for h in history], "k-", lw=2, label="all")
    if len(classes) > 1:
        for c in classes:
            key = f"rl_eo/reward/{safe_name(c)}"
            ax.plot(steps, [h.get(key, float("nan")) for h in history], ".-", lw=1, label=c)
    ax.set_xlabel("step")
    ax.set_ylabel("reward = w * mean similarity")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def noise_loss_curve(history: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """DDPM: the noise-prediction MSE against the step (log scale: it falls by orders of magnitude)."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    ax.semilogy([h["step"] for h in history], [h["loss"] for h in history], "-", label="||eps - eps_theta||^2")
    ax.set_xlabel("step")
    ax.set_ylabel("noise MSE")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    if title:
        ax.set_title(title)
    return _save(fig, path)
