"""Grad-CAM (Selvaraju et al. 2017) on the MFT-SNN encoder: where in a patch the embedding looks.

A Siamese network has no class score, so the target is the cosine between a patch's embedding and a
reference embedding — by default the mean embedding of the patches shown (what they have in common); the
maps are taken at the last conv layer (block5_conv3, after its ReLU), weighted by the spatially averaged
gradients, ReLU'd, upsampled and normalised per image to [0, 1]. Saved as PNG overlays of the patch size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from histosynth.snn.mft_snn import MFTSNN
from histosynth.snn.pairs import to_model_input

LAST_CONV_RELU = 30  # vgg16().features[:30] ends with block5_conv3 + ReLU; [30] is the last max-pool


def gradcam(model: MFTSNN, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Maps (N, H, W) in [0, 1] for images ``x`` in [-1, 1] at the model's size; ``reference``: (emb_dim,)."""
    model.eval()
    enc = model.encoder
    with torch.no_grad():
        f = enc.features[:LAST_CONV_RELU](enc.prepare(x))
    f = f.detach().float().requires_grad_(True)
    with torch.enable_grad():
        emb = model.head(enc.features[LAST_CONV_RELU](f).mean(dim=(2, 3)))
        z = F.normalize(emb, dim=1)
        ref = F.normalize(z.detach().mean(0) if reference is None else reference.to(z).view(-1), dim=0)
        target = (z * ref).sum()
        (grad,) = torch.autograd.grad(target, f)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * f.detach()).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
    lo = cam.amin(dim=(1, 2), keepdim=True)
    hi = cam.amax(dim=(1, 2), keepdim=True)
    return ((cam - lo) / (hi - lo).clamp_min(1e-12)).clamp_(0, 1)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """uint8 (H, W, 3) image blended with the 'jet' colour map of ``cam`` (H, W) in [0, 1]."""
    from matplotlib import colormaps

    heat = colormaps["jet"](np.clip(cam, 0, 1))[..., :3] * 255.0
    return np.clip((1 - alpha) * image.astype(np.float32) + alpha * heat, 0, 255).astype(np.uint8)


def save_gradcam(model: MFTSNN, images: np.ndarray, out_dir: str | Path, size: int = 0, device: torch.device | str = "cpu", names: list[str] | None = None) -> list[Path]:
    """Grad-CAM overlays of uint8 NHWC ``images`` as ``gradcam-XX.png`` (``size`` px, 0: the image size) plus
    ``gradcam-grid.png`` (patches on top, overlays below); -> the files written."""
    from PIL import Image

    dev = torch.device(device)
    model.to(dev)
    imgs = np.ascontiguousarray(images)
    n, h, w = imgs.shape[:3]
    side = size or h
    x = to_model_input(torch.from_numpy(imgs), model.image_size, dev)
    cams = gradcam(model, x).cpu()
    cams = F.interpolate(cams[:, None], size=(side, side), mode="bilinear", align_corners=False)[:, 0].numpy()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files, shown, blends = [], [], []
    for i in range(n):
        img = np.asarray(Image.fromarray(imgs[i]).resize((side, side), Image.BILINEAR)) if (h, w) != (side, side) else imgs[i]
        blend = overlay(img, cams[i])
        p = out / f"gradcam-{(names[i] if names else f'{i:02d}')}.png"
        Image.fromarray(blend).save(p)
        files.append(p)
        shown.append(img)
        blends.append(blend)
    grid = np.concatenate([np.concatenate(shown, axis=1), np.concatenate(blends, axis=1)], axis=0)
    Image.fromarray(grid).save(out / "gradcam-grid.png")
    files.append(out / "gradcam-grid.png")
    return files
