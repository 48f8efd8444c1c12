"""Downstream evaluation: does synthetic data train a classifier that works on real data (TSTR)?"""

from histosynth.evaluation.downstream.backbones import RESNETS, build_classifier, resnet_weights
from histosynth.evaluation.downstream.tstr import SETTINGS, TstrConfig, make_folds, run_tstr, tstr_for_bundle

__all__ = ["RESNETS", "SETTINGS", "TstrConfig", "build_classifier", "make_folds", "resnet_weights", "run_tstr", "tstr_for_bundle"]
