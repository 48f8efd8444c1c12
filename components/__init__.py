"""KFP v2 lightweight components: one per stage, each a thin call into ``histosynth.stages``.

Each declares the container image it runs in (``components.images``); locally, ``kfp.local`` runs the same
functions in subprocesses of the current Python, which has ``histosynth`` installed.
"""

from components.data import prepare_data
from components.evaluate import evaluate_gan
from components.export import export_onnx
from components.register import register_gan
from components.search import search_prepare, search_retrain, search_worker
from components.snn import build_pairs, train_snn
from components.train import train_gan

__all__ = ["prepare_data", "train_gan", "evaluate_gan", "register_gan", "export_onnx", "build_pairs", "train_snn", "search_prepare", "search_worker", "search_retrain"]
