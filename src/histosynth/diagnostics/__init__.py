"""Diagnostics people look at: t-SNE of real vs synthetic features and the nearest-real-neighbour grid."""

from histosynth.diagnostics.knn import grid_size, memorization_check, nearest
from histosynth.diagnostics.tsne import embed as tsne_embed
from histosynth.diagnostics.tsne import plot as tsne_plot

__all__ = ["grid_size", "memorization_check", "nearest", "tsne_embed", "tsne_plot"]
