"""The MFT-SNN encoder as the ``mft-snn`` feature extractor (``histosynth.evaluation.features.get_extractor``).

Features are the L2-normalised embeddings; the images go through the extractor interface's uint8/[-1, 1]
conventions and are resized to the size the network was trained at. Domain-specific, so never comparable
with published FID/KID numbers.
"""

from __future__ import annotations

from pathlib import Path

import torch

from histosynth.errors import HistosynthError
from histosynth.evaluation.features.base import Extractor
from histosynth.files.weights import sha256_cached


def mft_snn_extractor(device: torch.device, weights: str | Path | None = None) -> Extractor:
    if not weights:
        raise HistosynthError(
            "the 'mft-snn' extractor needs a trained SNN bundle, and none was given",
            "pass --weights PATH/snn.pt (train one with `histosynth snn train`), or use --extractor inception-fid",
        )
    from histosynth.snn.similarity import load_similarity

    sim = load_similarity(weights, device)

    def forward(x255: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(sim.embed(x255 / 127.5 - 1.0), dim=1)

    init = sim.init
    return Extractor(
        name="mft-snn",
        dim=int(sim.model.spec.get("emb_dim", 128)),
        preprocess=f"rgb 0..255 -> [-1, 1] -> bilinear {sim.image_size}x{sim.image_size} -> mft-snn embedding, L2-normalised",
        forward=forward,
        device=device,
        comparable=False,
        weights=str(weights),
        weights_sha256=sha256_cached(Path(weights) / "snn.pt" if Path(weights).is_dir() else weights),
        note=f"MFT-SNN domain encoder (init: {init.get('label', init.get('init', '?'))}); not comparable with published numbers",
        info={"init": init},
    )
