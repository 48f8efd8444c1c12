"""Real next to synthetic: two labelled panels of equal size, for a person to judge at a glance what the metrics
summarise (colour, texture, artefacts, collapse)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from histosynth.evaluation.diagnostics.knn import PAD, cell_image

TITLE, GAP = 18, 16  # px: label strip above each panel, space between the panels


def panel_size(n: int, cell: int) -> tuple[int, int, int]:
    """(columns, panel width, panel height) of a near-square grid of ``n`` cells."""
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    return cols, cols * (cell + PAD) - PAD, TITLE + rows * (cell + PAD) - PAD


def real_vs_synthetic(real: np.ndarray, synthetic: np.ndarray, path: str | Path, *, labels: tuple[str, str] = ("real", "synthetic"), cell: int = 64) -> Path:
    """PNG: ``real`` (left) and ``synthetic`` (right) uint8 HWC images, each panel titled with its label and count.
    The two sets must be the same size, so neither side looks better for showing more."""
    from PIL import Image, ImageDraw

    real, synthetic = np.asarray(real), np.asarray(synthetic)
    if len(real) != len(synthetic) or not len(real):
        raise ValueError(f"need as many real as synthetic images (> 0), got {len(real)} and {len(synthetic)}")
    cols, pw, ph = panel_size(len(real), cell)
    canvas = Image.new("RGB", (2 * pw + GAP + 2 * PAD, ph + 2 * PAD), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for side, (images, label) in enumerate(zip((real, synthetic), labels)):
        x0 = PAD + side * (pw + GAP)
        draw.text((x0, PAD + 2), f"{label} ({len(images)})", fill=(0, 0, 0))
        for i, img in enumerate(images):
            x, y = x0 + (i % cols) * (cell + PAD), PAD + TITLE + (i // cols) * (cell + PAD)
            canvas.paste(Image.fromarray(cell_image(img, cell)), (x, y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
