"""Diagnostics people look at: t-SNE of real vs synthetic features, the nearest-real-neighbour grid and a real
next to synthetic grid."""

from histosynth.evaluation.diagnostics.compare import real_vs_synthetic
from histosynth.evaluation.diagnostics.knn import grid_size, memorization_check, nearest
from histosynth.evaluation.diagnostics.tsne import embed as tsne_embed
from histosynth.evaluation.diagnostics.tsne import plot as tsne_plot

__all__ = ["grid_size", "memorization_check", "nearest", "real_vs_synthetic", "tsne_embed", "tsne_plot"]
