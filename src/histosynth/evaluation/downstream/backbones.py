"""Classifier backbones for the downstream (TSTR) protocol: torchvision ResNets with a new head.

The primary paper's set-up: ResNet-152, last 16 layers trainable, FC 1024 head, Adam 1e-5, StepLR(7, 0.1),
10 epochs. "Layers" here are the backbone's parameterised leaf modules (Conv2d, BatchNorm2d, Linear) in
definition order — the count the paper's phrase most plausibly refers to; ``trainable_layers=-1`` trains all.
The head (``Linear(in, hidden) -> ReLU -> Dropout(0.5) -> Linear(hidden, classes)``, or one ``Linear`` with
``hidden=0``) is always trained. Frozen BatchNorm layers are kept in eval mode while training.

ImageNet weights follow the offline rules of ``files.pretrained``: ``--weights PATH`` > ``$HISTOSYNTH_RESNET``
> ``<cache>/weights/<file>`` or the torch hub cache > checksummed download (the sha256 prefix torchvision puts in
the file name) unless offline -> a clear error. ``init="random"`` trains from scratch, recorded as such.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from histosynth import defaults
from histosynth.errors import HistosynthError
from histosynth.files.weights import UrlFile, hub_dir, sha256_cached, url_file, weights_dir

ENV_RESNET = "HISTOSYNTH_RESNET"
# torchvision IMAGENET1K_V1 files (sha256 prefix in the name, as torchvision checks it)
RESNETS = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "resnet101": "resnet101-63fe2227.pth",
    "resnet152": "resnet152-394f9c45.pth",
}
INITS = ("imagenet", "random")


def _ways(arch: str) -> str:
    f = RESNETS[arch]
    return (
        f"give torchvision's ImageNet {arch} weights ({f}) one of three ways: (1) --tstr-weights PATH or {ENV_RESNET}=PATH; "
        f"(2) put the file at {weights_dir() / f} or {hub_dir() / f}; (3) allow internet access (unset {defaults.ENV_OFFLINE}) to "
        f"download https://download.pytorch.org/models/{f}. Or train from scratch with --tstr-init random (recorded as such)"
    )


def resnet_weights(arch: str, path: str | Path | None = None) -> Path:
    fname = RESNETS[arch]
    prefix = fname.rsplit("-", 1)[1].split(".")[0]
    source = UrlFile(label=f"ImageNet {arch}", origin="torchvision", file=fname, url=f"https://download.pytorch.org/models/{fname}", sha256=prefix, hub=True)
    return url_file(source, path, flag="--tstr-weights", env=ENV_RESNET, ways=lambda: _ways(arch))


def _layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)) and any(True for _ in m.parameters(recurse=False))]


class Classifier(nn.Module):
    """ResNet trunk (``fc`` removed) + head; ``forward`` takes ImageNet-normalised float NCHW."""

    def __init__(self, trunk: nn.Module, head: nn.Module, frozen_bn: list[nn.BatchNorm2d]):
        super().__init__()
        self.trunk, self.head = trunk, head
        self._frozen_bn = frozen_bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        for bn in self._frozen_bn:  # frozen statistics stay frozen
            bn.eval()
        return self


def build_classifier(
    arch: str,
    num_classes: int,
    *,
    init: str = "imagenet",
    weights: str | Path | None = None,
    trainable_layers: int = 16,
    head_hidden: int = 1024,
    seed: int = 0,
) -> tuple[Classifier, dict]:
    """-> (model, description for the record: arch, init, weights, sha256, trainable layer/parameter counts)."""
    import torchvision.models as tvm

    if arch not in RESNETS:
        raise HistosynthError(f"unknown TSTR backbone '{arch}'", f"use one of: {', '.join(RESNETS)}")
    if init not in INITS:
        raise HistosynthError(f"unknown TSTR init '{init}'", "use imagenet (pretrained, the paper's) or random")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = getattr(tvm, arch)(weights=None)
        desc: dict = {"arch": arch, "init": init}
        if init == "imagenet":
            path = resnet_weights(arch, weights)
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            desc.update(weights=str(path), weights_sha256=sha256_cached(path))
        else:
            desc.update(weights=f"random(seed={seed})")
        in_features = net.fc.in_features
        net.fc = nn.Identity()
        head = nn.Sequential(nn.Linear(in_features, head_hidden), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(head_hidden, num_classes)) if head_hidden else nn.Linear(in_features, num_classes)
    layers = _layers(net)
    n_train = len(layers) if trainable_layers < 0 else min(int(trainable_layers), len(layers))
    net.requires_grad_(False)
    for m in layers[len(layers) - n_train :]:
        m.requires_grad_(True)
    frozen_bn = [m for m in layers[: len(layers) - n_train] if isinstance(m, nn.BatchNorm2d)]
    model = Classifier(net, head, frozen_bn)
    desc.update(
        trainable_layers=n_train,
        total_layers=len(layers),
        head_hidden=int(head_hidden),
        trainable_params=int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
    )
    return model, desc
