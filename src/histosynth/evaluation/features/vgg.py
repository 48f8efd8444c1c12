"""VGG-16 fc2 features for improved precision/recall (Kynkäänniemi et al. 2019 use VGG-16 fc2).

Same recipe as torch-fidelity's ``FeatureExtractorVGG16``: torchvision ``vgg16`` (IMAGENET1K_V1 weights), TF-1.x
bilinear resize to 224x224 on 0..255 values, ImageNet mean/std normalisation (x 255), classifier cut after the
second fully connected layer, ReLU -> 4096-d (``fc2_relu``). NVIDIA's original code used a TF-converted VGG-16, so
values are close to but not identical with the paper's; they are comparable with torch-fidelity's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from histosynth.evaluation.features.base import Extractor, resize_tf1_bilinear
from histosynth.files.pretrained import VGG16_FILE, vgg16_weights
from histosynth.files.weights import sha256_cached

SIZE = 224
PREPROCESS = "rgb uint8 0..255 -> float32 -> tf1-bilinear(align_corners=False) 224x224 -> imagenet mean/std -> vgg16 fc2 relu 4096"
_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def _build(state_dict: dict | None, seed: int, device: torch.device):
    from torchvision.models import vgg16

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = vgg16(weights=None)
    if state_dict is not None:
        net.load_state_dict(state_dict)
    net.classifier = net.classifier[:4]  # fc1, relu, dropout, fc2
    net.eval().to(device)
    mean = torch.tensor(_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(_STD, device=device).view(1, 3, 1, 1)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(net((resize_tf1_bilinear(x, (SIZE, SIZE)) - mean) / std))

    return net, forward


def vgg16_fc2(device: torch.device, weights: str | Path | None = None) -> Extractor:
    path = vgg16_weights(weights)
    _, forward = _build(torch.load(path, map_location="cpu", weights_only=True), 0, device)
    return Extractor(
        name="vgg16",
        dim=4096,
        preprocess=PREPROCESS,
        forward=forward,
        device=device,
        comparable=True,
        weights=str(path),
        weights_sha256=sha256_cached(path),
        note=f"torchvision ImageNet VGG-16 ({VGG16_FILE}); matches torch-fidelity's vgg16 fc2_relu",
    )


def untrained_vgg16(device: torch.device, weights: str | Path | None = None, seed: int = 0) -> Extractor:
    _, forward = _build(None, seed, device)
    return Extractor(
        name="untrained-vgg16",
        dim=4096,
        preprocess=PREPROCESS,
        forward=forward,
        device=device,
        comparable=False,
        weights=f"random(seed={seed})",
        weights_sha256=f"random-torchvision-vgg16-seed{seed}",
        note="not comparable with published precision/recall: random VGG-16 weights",
    )
