"""MFT-SNN: a Siamese VGG-16 autoencoder that scores image similarity (the similarity network of the RL-EO paper).

Other code uses it through :func:`load_similarity` (the RL-EO reward) and the ``mft-snn`` feature extractor
(:func:`histosynth.snn.extractor.mft_snn_extractor`, which ``histosynth.evaluation.features`` imports by name
when asked for it).
"""

from __future__ import annotations

from histosynth.snn.extractor import mft_snn_extractor
from histosynth.snn.similarity import SimilarityModel, load_similarity

__all__ = ["SimilarityModel", "load_similarity", "mft_snn_extractor"]
