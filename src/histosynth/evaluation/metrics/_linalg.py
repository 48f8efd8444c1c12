"""float64 helpers shared by the metrics: device choice, covariance, blocked pairwise products."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

from histosynth.device import resolve_device


def as_tensor(x: np.ndarray | torch.Tensor, device: str | torch.device = "auto") -> torch.Tensor:
    dev = resolve_device(device, "--device")
    t = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
    if t.ndim != 2:
        raise ValueError(f"features must be a 2-d (n, dim) array, got shape {tuple(t.shape)}")
    return t.to(dev, torch.float64)


def check_pair(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor) -> None:
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features must be (n, dim) with the same dim, got {tuple(real.shape)} and {tuple(fake.shape)}")


def as_backend(x: np.ndarray | torch.Tensor, device: str | torch.device = "auto") -> np.ndarray | torch.Tensor:
    """float64 (n, dim) features as a numpy array when the device is the CPU (numpy's BLAS is the faster one
    here), else as a torch tensor on that device."""
    t = as_tensor(x, device)
    return t.numpy() if t.device.type == "cpu" else t


def to_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.detach().cpu().numpy()


def mean_cov(x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (``np.cov(x, rowvar=False)``) in float64, as numpy arrays."""
    if isinstance(x, torch.Tensor) and x.device.type == "cpu":
        x = x.numpy()
    mu = x.mean(0)
    xc = x - mu
    sigma = (xc.T @ xc) / (x.shape[0] - 1)
    return to_numpy(mu), to_numpy(sigma)


def row_blocks(n_rows: int, n_cols: int, block_elems: int) -> Iterator[slice]:
    step = max(1, min(n_rows, block_elems // max(n_cols, 1)))
    for i in range(0, n_rows, step):
        yield slice(i, min(i + step, n_rows))


def sq_dists(a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``|a|^2 + |b|^2 - 2 a.b`` (float64, clamped at 0)."""
    d = a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    return d.clamp_min_(0.0)


@contextlib.contextmanager
def full_precision_matmul() -> Iterator[None]:
    """No TF32 for float32 matmuls inside (training code may have enabled it globally)."""
    old_mm, old_cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old_mm, old_cudnn
