"""CLIP image embeddings for CMMD (Jayasumana et al. 2024 use OpenAI CLIP ViT-L/14@336px).

Weights: OpenAI's released checkpoint (a TorchScript archive, or a plain state dict with the same ``visual.*``
keys), found as ``--weights PATH`` > ``$HISTOSYNTH_CLIP`` > ``<cache>/weights/<file>`` > downloaded from
OpenAI's URL, whose path carries the file's full sha256 (verified before use). Offline without the file the
extractor refuses with the ways to provide it; nothing here ships or fakes the weights.

Only the vision tower is built (its layout is read off the state dict: width, layers, patch size, grid): patch
convolution, class token + positional embedding, pre-LN, residual attention blocks with QuickGELU MLPs, post-LN
of the class token, projection -> 768-d (ViT-L/14). Preprocessing: uint8 -> [0, 1] -> bicubic resize (torch,
``align_corners=False``, antialias when shrinking) to the model's resolution (336) -> CLIP mean/std. The
reference resizes with TF/PIL bicubic, so values agree closely but not bit for bit.

FID/KID on these features are not the standard ones (``comparable=False``); CMMD on them is (see
``histosynth.evaluation.metrics.cmmd.label``).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from histosynth import defaults
from histosynth.errors import DataError
from histosynth.evaluation.features.base import Extractor
from histosynth.files.weights import UrlFile, sha256_cached, url_file, weights_dir

ENV_CLIP = "HISTOSYNTH_CLIP"
_MEAN = (0.48145466, 0.4578275, 0.40821073)
_STD = (0.26862954, 0.26130258, 0.27577711)


def _openai(model: str, file: str, sha256: str) -> UrlFile:
    """OpenAI's download URL carries the file's full sha256."""
    return UrlFile(label=f"CLIP {model}", origin="OpenAI", file=file, url=f"https://openaipublic.azureedge.net/clip/models/{sha256}/{file}", sha256=sha256, progress=True)


MODELS = {
    "clip-vit-l14-336": _openai("ViT-L/14@336px", "ViT-L-14-336px.pt", "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"),
    "clip-vit-b16": _openai("ViT-B/16", "ViT-B-16.pt", "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"),
}


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(width, width * 4), gelu=_QuickGELU(), c_proj=nn.Linear(width * 4, width)))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.Sequential(*[_Block(width, heads) for _ in range(layers)])


class ClipVisual(nn.Module):
    """CLIP's VisionTransformer under the checkpoint's ``visual.*`` parameter names."""

    def __init__(self, width: int, layers: int, patch: int, grid: int, out_dim: int):
        super().__init__()
        self.resolution = patch * grid
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = _Transformer(width, layers, width // 64)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, out_dim))

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor]) -> ClipVisual:
        vis = {k[len("visual.") :]: v.float() for k, v in sd.items() if k.startswith("visual.")}
        if "conv1.weight" not in vis:
            raise DataError("the checkpoint has no CLIP ViT vision tower (no visual.conv1.weight)", "pass an OpenAI CLIP ViT checkpoint (e.g. ViT-L-14-336px.pt)")
        width, patch = vis["conv1.weight"].shape[0], vis["conv1.weight"].shape[-1]
        layers = len({k.split(".")[2] for k in vis if k.startswith("transformer.resblocks.")})
        grid = round((vis["positional_embedding"].shape[0] - 1) ** 0.5)
        net = cls(width, layers, patch, grid, vis["proj"].shape[1])
        net.load_state_dict(vis)
        return net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).transpose(1, 2)  # (N, grid^2, width)
        cls_tok = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls_tok, x], 1) + self.positional_embedding.to(x.dtype)
        x = self.transformer.resblocks(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


def _ways(spec: UrlFile) -> str:
    return (
        f"give OpenAI's {spec.label} checkpoint ({spec.file}, sha256 {spec.sha256}) one of three ways: "
        f"(1) --weights PATH or {ENV_CLIP}=PATH; (2) put it at {weights_dir() / spec.file}; (3) allow internet "
        f"access (unset {defaults.ENV_OFFLINE}) to download {spec.url}. Without it, CMMD can still be computed on "
        "another extractor's features, labelled as not CLIP-CMMD"
    )


def clip_weights(name: str, path: str | Path | None = None) -> Path:
    """A verified checkpoint: ``path`` > $HISTOSYNTH_CLIP > cache > download from OpenAI (unless offline)."""
    spec = MODELS[name]
    return url_file(spec, path, flag="--weights", env=ENV_CLIP, ways=lambda: _ways(spec))


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """OpenAI ships TorchScript archives; a plain ``torch.save``d state dict is accepted too."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated, but it is OpenAI's format
            return torch.jit.load(str(path), map_location="cpu").state_dict()
    except RuntimeError:
        return torch.load(path, map_location="cpu", weights_only=True)


def make_extractor(name: str, net: ClipVisual, device: torch.device, weights: str, sha256: str) -> Extractor:
    net = net.eval().requires_grad_(False).to(device)
    size = net.resolution
    mean = torch.tensor(_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(_STD, device=device).view(1, 3, 1, 1)

    def forward(x: torch.Tensor) -> torch.Tensor:
        x = x / 255.0
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=x.shape[-1] > size).clamp_(0.0, 1.0)
        return net((x - mean) / std)

    return Extractor(
        name=name,
        dim=net.proj.shape[1],
        preprocess=f"rgb uint8 -> /255 -> torch bicubic {size}x{size} (antialias when shrinking) -> clip mean/std -> {name} image embedding",
        forward=forward,
        device=device,
        comparable=False,
        weights=weights,
        weights_sha256=sha256,
        note="CLIP embeddings: CMMD on them is comparable with Jayasumana et al. 2024 only for clip-vit-l14-336; FID/KID on them are not the standard ones",
    )


def _factory(name: str):
    def factory(device: torch.device, weights: str | Path | None = None) -> Extractor:
        path = clip_weights(name, weights)
        return make_extractor(name, ClipVisual.from_state_dict(load_state_dict(path)), device, str(path), sha256_cached(path))

    return factory


clip_vit_l14_336 = _factory("clip-vit-l14-336")
clip_vit_b16 = _factory("clip-vit-b16")
