"""The frozen MFT-SNN as other code uses it (the RL-EO reward, the ``mft-snn`` feature extractor).

``load_similarity(path, device)`` -> :class:`SimilarityModel`; ``similarity(a, b)`` takes two image batches in
[-1, 1] NCHW of any size (resized to the size the network was trained at), returns ``Tensor[N]`` in [0, 1] on
the model's device. The network is frozen (no parameter requires grad), in eval mode, and runs under
``torch.no_grad``; ``half=True`` runs it in fp16 on CUDA (ignored on CPU, where fp16 convs are slow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from histosynth.snn.mft_snn import MFTSNN, load_bundle, similarity_from_embeddings


class SimilarityModel:
    def __init__(self, model: MFTSNN, meta: dict[str, Any], device: torch.device, half: bool = False):
        self.device = device
        self.half = bool(half and device.type == "cuda")
        self.model = model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        if self.half:
            self.model.half()
        self.meta = meta
        self.image_size = model.image_size

    @property
    def init(self) -> dict[str, Any]:
        """Which weights the network started from (imagenet / hed / random) — report it with any result."""
        return dict(self.meta.get("extra", {}).get("init", {}))

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (N, 3, H, W) in [-1, 1], got shape {tuple(x.shape)}")
        x = x.to(self.device, non_blocking=True)
        x = x.half() if self.half else x.float()
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > self.image_size)
        return x

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, emb_dim) float32 embeddings (not normalised)."""
        return self.model.embed(self._prep(x)).float()

    @torch.no_grad()
    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of the embeddings mapped to [0, 1], one value per pair (a[i], b[i])."""
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"batches differ in size: {a.shape[0]} vs {b.shape[0]}")
        x = torch.cat([self._prep(a), self._prep(b)])  # resized first: a and b may differ in size
        ea, eb = self.model.embed(x).float().chunk(2)
        return similarity_from_embeddings(ea, eb)

    __call__ = similarity


def load_similarity(path: str | Path, device: str | torch.device = "auto", half: bool = False) -> SimilarityModel:
    """Load an ``snn.pt`` bundle (or its folder) as a frozen similarity model on ``device`` ("auto": CUDA if present)."""
    from histosynth.device import resolve_device

    dev = resolve_device(device, "--device")
    model, meta = load_bundle(path, "cpu")
    return SimilarityModel(model, meta, dev, half=half)
