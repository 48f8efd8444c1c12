"""MFT-SNN: a Siamese VGG-16 autoencoder that scores image similarity (the similarity network of the RL-EO paper).

Other code uses it through :func:`load_similarity` (the RL-EO reward) and the ``mft-snn`` feature extractor
(:mod:`histosynth.evaluation.features.mft_snn`).
"""

from __future__ import annotations

from histosynth.snn.similarity import SimilarityModel, load_similarity

__all__ = ["SimilarityModel", "load_similarity"]
