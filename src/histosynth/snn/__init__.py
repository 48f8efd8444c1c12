"""MFT-SNN: a Siamese VGG-16 autoencoder that scores image similarity (DESIGN.md 1.1).

Other code uses it through :func:`load_similarity` (the RL-EO reward) and the ``mft-snn`` feature extractor,
which importing this package registers.
"""

from __future__ import annotations

from histosynth.evaluation.features import EXTRACTORS, register_extractor
from histosynth.snn.extractor import mft_snn_extractor
from histosynth.snn.similarity import SimilarityModel, load_similarity

if EXTRACTORS.get("mft-snn") is not mft_snn_extractor:
    register_extractor("mft-snn", mft_snn_extractor, overwrite=True)

__all__ = ["SimilarityModel", "load_similarity", "mft_snn_extractor"]
