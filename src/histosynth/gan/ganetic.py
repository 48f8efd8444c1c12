"""GANetic loss: a GAN loss found by genetic programming over loss formulas (Akhmedova & Körber, 2024).

Replaces binary cross-entropy in both players; registered as ``loss.name: ganetic``.
"""

from __future__ import annotations

import torch

from histosynth.gan.losses import GANLoss, register


@register("ganetic")
class GANeticLoss(GANLoss):
    """L(y, p) = p^3 + sqrt(|3.985 y / (p + eps)| + eps), p = sigmoid(logits), averaged over the batch."""

    COEF = 3.985

    def __init__(self, eps: float = 1e-8):
        self.eps = float(eps)

    def value(self, logits: torch.Tensor, y: float) -> torch.Tensor:
        """Per sample."""
        p = torch.sigmoid(logits.float())
        return p.pow(3) + torch.sqrt(torch.abs(self.COEF * y / (p + self.eps)) + self.eps)

    def real_terms(self, logits):
        return self.value(logits, 1.0)

    def fake_terms(self, logits):
        return self.value(logits, 0.0)

    def g_terms(self, fake_logits):
        return self.value(fake_logits, 1.0)
