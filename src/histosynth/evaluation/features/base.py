"""The feature-extractor interface and the preprocessing every extractor shares.

Input convention (one for every extractor):

* ``uint8`` NHWC (N, H, W, 3) — patches as stored (``PatchStore.images``), values 0..255;
* ``uint8`` NCHW (N, 3, H, W) is accepted too (a uint8 batch whose last axis is 3 is read as NHWC);
* float NCHW (N, 3, H, W) in [-1, 1] — generator output (tanh); mapped to 0..255 as ``(x + 1) * 127.5``
  and clamped, without rounding. ``histosynth.evaluation.suite`` quantizes generator output to uint8 first
  (:func:`to_uint8`), so real and fake images go through the identical path.

Resizing is done one way for every extractor: TensorFlow-1.x ``tf.image.resize_bilinear`` with
``align_corners=False`` (source coordinate = ``dst * in / out``, computed in float32), on float 0..255 values.
It is what the reference FID network was evaluated with (TTUR / StyleGAN's TorchScript wrapper / torch-fidelity),
and it is bit-compatible on CPU with torch-fidelity's ``interpolate_bilinear_2d_like_tensorflow1x`` (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from histosynth.errors import HistosynthError


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output (float NCHW in [-1, 1]) -> uint8 NCHW, the inverse of ``x / 127.5 - 1``, rounded."""
    return ((images.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def as_float255_nchw(batch: Any) -> torch.Tensor:
    """Any accepted input (see module doc) -> float32 NCHW tensor with values in [0, 255] (on the input's device)."""
    x = torch.as_tensor(np.ascontiguousarray(batch)) if isinstance(batch, np.ndarray) else batch
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a numpy array or torch tensor, got {type(batch).__name__}")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"expected a batch of images with 4 dims, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        if x.shape[-1] == 3:  # NHWC (a uint8 NCHW image 3 px wide is not a thing we meet)
            x = x.permute(0, 3, 1, 2)
        if x.shape[1] != 3:
            raise ValueError(f"expected RGB images (3 channels), got shape {tuple(x.shape)}")
        return x.float().contiguous()
    if not torch.is_floating_point(x):
        raise ValueError(f"images must be uint8 (0..255) or float in [-1, 1], got dtype {x.dtype}")
    if x.shape[1] != 3:
        raise ValueError(f"float images must be NCHW with 3 channels, got shape {tuple(x.shape)}")
    return ((x.float() + 1.0) * 127.5).clamp(0.0, 255.0).contiguous()


def _tf1_axis(n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    scale = torch.tensor(n_in / n_out, dtype=torch.float32)
    src = torch.arange(n_out, dtype=torch.float32) * scale
    lo = src.long()  # src >= 0, so truncation == floor
    hi = (lo + 1).clamp_max(n_in - 1)
    frac = src - lo.float()
    return lo.to(device), hi.to(device), frac.to(device)


def resize_tf1_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF 1.x ``resize_bilinear(align_corners=False, half_pixel_centers=False)`` of a float NCHW batch."""
    h, w = size
    if x.shape[2] == h and x.shape[3] == w:
        return x
    ylo, yhi, dy = _tf1_axis(x.shape[2], h, x.device)
    xlo, xhi, dx = _tf1_axis(x.shape[3], w, x.device)
    rows_lo, rows_hi = x[:, :, ylo, :], x[:, :, yhi, :]
    in00, in01 = rows_lo[:, :, :, xlo], rows_lo[:, :, :, xhi]
    in10, in11 = rows_hi[:, :, :, xlo], rows_hi[:, :, :, xhi]
    dx = dx.view(1, 1, 1, w)
    top = in00 + (in01 - in00) * dx
    bottom = in10 + (in11 - in10) * dx
    return top + (bottom - top) * dy.view(1, 1, h, 1)


@dataclass
class Extractor:
    """A feature network behind the common interface.

    ``__call__(batch) -> (N, dim) float64`` for any accepted input (module doc). ``comparable`` is True only
    for the standard network with its standard preprocessing (numbers may then be set beside published ones,
    sample-size caveats aside); every result computed with another extractor carries ``note``.
    """

    name: str
    dim: int
    preprocess: str  # human-readable, also part of the feature-cache key
    forward: Callable[[torch.Tensor], torch.Tensor]  # float 0..255 NCHW on device -> (N, dim)
    device: torch.device
    comparable: bool = False
    weights: str = ""  # where the weights came from (path or "random(seed=0)")
    weights_sha256: str = ""
    logits: Callable[[torch.Tensor], torch.Tensor] | None = None  # for IS; None when the network has no classifier
    note: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def has_logits(self) -> bool:
        return self.logits is not None

    def _prep(self, batch: Any) -> torch.Tensor:
        return as_float255_nchw(batch).to(self.device, non_blocking=True)

    @torch.inference_mode()
    def __call__(self, batch: Any) -> np.ndarray:
        feats = self.forward(self._prep(batch))
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise RuntimeError(f"extractor {self.name} returned shape {tuple(feats.shape)}, expected (N, {self.dim})")
        return feats.double().cpu().numpy()

    @torch.inference_mode()
    def class_logits(self, batch: Any) -> np.ndarray:
        if self.logits is None:
            raise HistosynthError(
                f"extractor '{self.name}' has no classifier logits, so the Inception Score cannot be computed with it",
                "the FID Inception (fid-helper default_1.pt) is a pool-features-only network; drop 'is' from --metrics",
            )
        return self.logits(self._prep(batch)).double().cpu().numpy()

    def identity(self) -> dict[str, Any]:
        """What determines the features: part of the feature-cache key and of every result record."""
        return {
            "name": self.name,
            "dim": self.dim,
            "preprocess": self.preprocess,
            "weights_sha256": self.weights_sha256,
            "comparable_with_published": self.comparable,
        }

    def describe(self) -> dict[str, Any]:
        return {**self.identity(), "weights": self.weights, "note": self.note, "has_logits": self.has_logits}

    def extract(self, images: Any, batch_size: int = 64, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Features of a whole array (e.g. a memory-mapped uint8 NHWC store) in batches -> (N, dim) float64."""
        n = len(images)
        out = np.empty((n, self.dim), dtype=np.float64)
        for i in range(0, n, batch_size):
            chunk = images[i : i + batch_size]
            out[i : i + len(chunk)] = self(np.asarray(chunk) if not isinstance(chunk, torch.Tensor) else chunk)
            if progress:
                progress(len(chunk))
        return out
