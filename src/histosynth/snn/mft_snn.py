"""The MFT-SNN: a Siamese network whose two branches share one VGG-16 autoencoder.

* encoder: VGG-16's 13 conv layers (torchvision ``vgg16().features``), initialised as chosen
  (:mod:`histosynth.snn.weights`); its input transform (channel order, mean, std) travels as buffers, so a
  bundle is self-describing whatever the init;
* decoder: five 4x4 stride-2 transposed convs (x2 each, like the encoder's five pools) back to the image,
  ``tanh`` output in [-1, 1] — light on purpose: it regularises the encoder, it is not a generator;
* embedding head: global average pool -> Linear(512, hidden) -> ReLU -> Linear(hidden, emb_dim).

Similarity is the cosine of the two embeddings mapped to [0, 1]: ``(1 + cos) / 2``. The loss is the contrastive
loss of Hadsell et al. (2006) on the distance of L2-normalised embeddings plus the MSE reconstruction of
both inputs. Freezing counts "layers" as the 13 conv layers; the new layers (head, decoder) always train.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from histosynth.errors import HistosynthError
from histosynth.files.torchfile import load_payload, save_atomic
from histosynth.snn.weights import CONV_INDICES, IMAGENET_NORM, InputNorm

FORMAT = "histosynth.snn/1"
FILENAME = "snn.pt"
N_CONV = len(CONV_INDICES)


def _vgg16_features(seed: int) -> nn.Sequential:
    """torchvision's ``vgg16().features`` with its conv init, without building the 120M-parameter classifier."""
    from torchvision.models.vgg import cfgs, make_layers

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        features = make_layers(cfgs["D"], batch_norm=False)
        for m in features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
    return features


class Encoder(nn.Module):
    """VGG-16 conv features of images in [-1, 1] (N, 3, H, W) -> (N, 512, H/32, W/32)."""

    def __init__(self, norm: InputNorm = IMAGENET_NORM, seed: int = 0):
        super().__init__()
        self.features = _vgg16_features(seed)
        self.register_buffer("in_perm", torch.tensor(norm.perm, dtype=torch.long))
        self.register_buffer("in_mean", torch.tensor(norm.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("in_std", torch.tensor(norm.std, dtype=torch.float32).view(1, 3, 1, 1))

    def set_norm(self, norm: InputNorm) -> None:
        self.in_perm.copy_(torch.tensor(norm.perm, dtype=torch.long))
        self.in_mean.copy_(torch.tensor(norm.mean).view(1, 3, 1, 1))
        self.in_std.copy_(torch.tensor(norm.std).view(1, 3, 1, 1))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x01 = (x + 1.0) * 0.5
        return (x01[:, self.in_perm] - self.in_mean.to(x.dtype)) / self.in_std.to(x.dtype)

    def convs(self) -> list[nn.Conv2d]:
        return [self.features[i] for i in CONV_INDICES]  # type: ignore[misc]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.prepare(x))


class Decoder(nn.Module):
    """(N, 512, h, w) -> (N, 3, 32h, 32w) in [-1, 1], resized to ``size`` when the input was not a multiple of 32."""

    def __init__(self, width: int = 32):
        super().__init__()
        chans = [512, width * 8, width * 4, width * 2, width]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(width, 3, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, f: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        y = self.net(f)
        if tuple(y.shape[-2:]) != tuple(size):
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return y


class MFTSNN(nn.Module):
    """Shared-weight Siamese autoencoder. ``spec`` (emb_dim, hidden, decoder_width, image_size) rebuilds it."""

    def __init__(self, spec: dict[str, Any], norm: InputNorm = IMAGENET_NORM, seed: int = 0):
        super().__init__()
        self.spec = dict(spec)
        self.encoder = Encoder(norm, seed)
        self.decoder = Decoder(int(spec.get("decoder_width", 32)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            self.head = nn.Sequential(nn.Linear(512, int(spec.get("hidden", 256))), nn.ReLU(inplace=True), nn.Linear(int(spec.get("hidden", 256)), int(spec.get("emb_dim", 128))))
            for m in self.decoder.modules():
                if isinstance(m, nn.ConvTranspose2d):
                    nn.init.normal_(m.weight, 0.0, 0.02)
                    nn.init.zeros_(m.bias)

    @property
    def image_size(self) -> int:
        return int(self.spec.get("image_size", 64))

    def embed_features(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(f.mean(dim=(2, 3)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_features(self.encoder(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (embeddings (N, emb_dim), reconstructions (N, 3, H, W))."""
        f = self.encoder(x)
        return self.embed_features(f), self.decoder(f, tuple(x.shape[-2:]))

    # ---- freezing ---------------------------------------------------------------------------------------
    def set_trainable(self, last: int) -> list[str]:
        """Only the last ``last`` of the 13 conv layers train (plus head and decoder); -> names of trainable convs."""
        if not 0 <= last <= N_CONV:
            raise HistosynthError(f"trainable conv layers must be within 0..{N_CONV}, got {last}")
        names = []
        for i, idx in enumerate(CONV_INDICES):
            on = i >= N_CONV - last
            for p in self.encoder.features[idx].parameters():
                p.requires_grad_(on)
            if on:
                names.append(f"encoder.features.{idx}")
        for p in [*self.head.parameters(), *self.decoder.parameters()]:
            p.requires_grad_(True)
        return names

    def trainable_convs(self) -> int:
        return sum(1 for c in self.encoder.convs() if c.weight.requires_grad)

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(reconstruction params: decoder; similarity params: trainable encoder layers + head). Disjoint, so
        each parameter is stepped by exactly one optimizer (Adagrad / Adam)."""
        recon = [p for p in self.decoder.parameters() if p.requires_grad]
        sim = [p for p in [*self.encoder.parameters(), *self.head.parameters()] if p.requires_grad]
        return recon, sim


def similarity_from_embeddings(ea: torch.Tensor, eb: torch.Tensor) -> torch.Tensor:
    """Cosine similarity mapped to [0, 1] (1: same direction, 0.5: orthogonal, 0: opposite)."""
    return ((1.0 + F.cosine_similarity(ea.float(), eb.float(), dim=1, eps=1e-8)) * 0.5).clamp_(0.0, 1.0)


def contrastive_loss(ea: torch.Tensor, eb: torch.Tensor, label: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Hadsell et al. (2006): ``mean(y d^2 + (1 - y) max(0, m - d)^2)``, d the distance of L2-normalised embeddings.

    Normalising matches the cosine similarity used at inference: ``d^2 = 2 - 2 cos``.
    """
    za, zb = F.normalize(ea, dim=1, eps=1e-8), F.normalize(eb, dim=1, eps=1e-8)
    d = (za - zb).pow(2).sum(1).clamp_min(1e-12).sqrt()
    y = label.to(d.dtype)
    return (y * d.pow(2) + (1.0 - y) * F.relu(margin - d).pow(2)).mean()


def snn_loss(model: MFTSNN, xa: torch.Tensor, xb: torch.Tensor, label: torch.Tensor, margin: float, recon_weight: float) -> dict[str, torch.Tensor]:
    """Contrastive + recon_weight * MSE(recon, input) averaged over both branches (one shared forward)."""
    emb, rec = model(torch.cat([xa, xb]))
    ea, eb = emb.chunk(2)
    lc = contrastive_loss(ea, eb, label, margin)
    lr = F.mse_loss(rec, torch.cat([xa, xb]))
    return {"loss": lc + recon_weight * lr, "loss_contrastive": lc, "loss_recon": lr, "sim": similarity_from_embeddings(ea.detach(), eb.detach())}


# ---- bundle -----------------------------------------------------------------------------------------------
def save_bundle(path: str | Path, model: MFTSNN, extra: dict[str, Any]) -> Path:
    """One self-describing file: spec + state dict (incl. the input transform) + provenance (init, stages)."""
    path = Path(path)
    if path.suffix != ".pt":
        path = path / FILENAME
    return save_atomic(path, {"format": FORMAT, "spec": dict(model.spec), "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "extra": extra})


def read_bundle(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    return load_payload(path, "SNN bundle", FORMAT, "pass the snn.pt written by `histosynth snn train` (a generator.pt is not an SNN), or retrain it")


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> tuple[MFTSNN, dict[str, Any]]:
    """-> (model in eval mode on ``device``, {spec, extra})."""
    payload = read_bundle(path)
    model = MFTSNN(payload["spec"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise HistosynthError(f"'{path}' does not fit the MFT-SNN architecture: {str(e)[:300]}", "retrain the bundle with this version of histosynth") from e
    model.to(device).eval()
    return model, {"spec": payload["spec"], "extra": payload.get("extra", {})}
