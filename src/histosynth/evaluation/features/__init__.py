"""Feature extractors behind one interface: ``get_extractor(name, device) -> Extractor``.

======================  =====  ==========================================================  ==========
name                    dim    network                                                     comparable
======================  =====  ==========================================================  ==========
``inception-fid``       2048   TF Inception-v3 2015-12-05 TorchScript (FID/KID standard)   yes
``inception-fid-bf16``  2048   the same under bf16 autocast (the memorization gate's)       no
``vgg16``               4096   torchvision ImageNet VGG-16, fc2 after ReLU (precision/recall)  yes
``random-inception``    2048   torchvision Inception-v3, seeded random weights (has logits)  no
``untrained-vgg16``     4096   torchvision VGG-16, seeded random weights                   no
``clip-vit-l14-336``    768    OpenAI CLIP ViT-L/14@336px image embedding (CLIP-CMMD)      no (CMMD: yes)
``clip-vit-b16``        512    OpenAI CLIP ViT-B/16 image embedding (lighter)               no
``mft-snn``             128    MFT-SNN encoder embedding; weights = an ``snn.pt`` bundle     no
======================  =====  ==========================================================  ==========

Random-weight extractors exist for offline smoke tests; they are used only when asked for by name, and every
result computed with them says "not comparable". Another module adds an extractor with
``register_extractor(name, factory)`` where ``factory(device: torch.device, weights: str | None) -> Extractor``
(or ``"module:function"`` naming it, imported on first use).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Callable

import torch

from histosynth import defaults
from histosynth.errors import HistosynthError
from histosynth.device import resolve_device
from histosynth.evaluation.config import DEFAULT_EXTRACTOR as DEFAULT
from histosynth.evaluation.features.base import Extractor, as_float255_nchw, resize_tf1_bilinear, to_uint8
from histosynth.evaluation.features.clip import ENV_CLIP, clip_vit_b16, clip_vit_l14_336
from histosynth.evaluation.features.inception import inception_fid, inception_fid_bf16, random_inception
from histosynth.evaluation.features.vgg import untrained_vgg16, vgg16_fc2
from histosynth.files.pretrained import ENV_INCEPTION, ENV_VGG16
from histosynth.files.weights import weights_dir

ExtractorFactory = Callable[[torch.device, "str | Path | None"], Extractor]


# Extractors built from code that itself imports this package name their factory as "module:function", imported
# on first use: the evaluation package never imports histosynth.snn.
EXTRACTORS: dict[str, ExtractorFactory | str] = {
    "inception-fid": inception_fid,
    "inception-fid-bf16": inception_fid_bf16,
    "vgg16": vgg16_fc2,
    "random-inception": random_inception,
    "untrained-vgg16": untrained_vgg16,
    "clip-vit-l14-336": clip_vit_l14_336,
    "clip-vit-b16": clip_vit_b16,
    "mft-snn": "histosynth.evaluation.features.mft_snn:mft_snn_extractor",
}
_loaded: dict[tuple, Extractor] = {}


def register_extractor(name: str, factory: ExtractorFactory | str, *, overwrite: bool = False) -> None:
    """Add an extractor: a factory, or ``"module:function"`` naming one (imported when first asked for)."""
    if name in EXTRACTORS and not overwrite:
        raise ValueError(f"extractor '{name}' is already registered")
    EXTRACTORS[name] = factory
    for key in [k for k in _loaded if k[0] == name]:
        del _loaded[key]


def _factory(name: str) -> ExtractorFactory:
    factory = EXTRACTORS[name]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = EXTRACTORS[name] = getattr(importlib.import_module(module), attr)
    return factory


def available_extractors() -> list[str]:
    return sorted(EXTRACTORS)


def get_extractor(name: str = DEFAULT, device: str | torch.device = "auto", weights: str | Path | None = None) -> Extractor:
    """Load (once per process) the named extractor on ``device`` ("auto": CUDA when present)."""
    if name not in EXTRACTORS:
        raise HistosynthError(f"unknown feature extractor '{name}'", f"use one of: {', '.join(available_extractors())}")
    dev = resolve_device(device, "--device")
    # what the factories read besides their arguments: a changed env/cache/offline state loads afresh
    context = (os.environ.get(ENV_INCEPTION, ""), os.environ.get(ENV_VGG16, ""), os.environ.get(ENV_CLIP, ""), str(weights_dir()), defaults.offline())
    key = (name, str(dev), str(weights or ""), context)
    if key not in _loaded:
        _loaded[key] = _factory(name)(dev, weights)
    return _loaded[key]


__all__ = [
    "DEFAULT",
    "EXTRACTORS",
    "Extractor",
    "ExtractorFactory",
    "as_float255_nchw",
    "available_extractors",
    "get_extractor",
    "register_extractor",
    "resize_tf1_bilinear",
    "to_uint8",
]
