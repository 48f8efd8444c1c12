"""LeCam regularisation (Tseng et al. 2021, "Regularizing Generative Adversarial Networks under Limited Data").

On little data D's logits on real and fake images drift apart, and G's gradient grows less informative. LeCam
adds to D's loss

    R = E[relu(D(x) - a_fake)^2] + E[relu(a_real - D(G(z)))^2]

where ``a_real`` and ``a_fake`` are exponential moving averages (``decay``) of D's mean logit on real and fake
batches. Real logits are pulled down toward the fake anchor and fake logits up toward the real anchor. The
relu (as in the authors' release) leaves logits that are already on the other side alone. The paper shows R
bounds a LeCam divergence. It is used with DiffAugment, not instead of it.

The anchors are part of the training state: :meth:`state_dict` goes into checkpoints, so a resumed run
continues with the same anchors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class LeCam:
    def __init__(self, weight: float, decay: float = 0.99):
        if weight < 0:
            raise ValueError(f"LeCam weight must be >= 0, got {weight}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"LeCam decay must be in [0, 1), got {decay}")
        self.weight, self.decay = float(weight), float(decay)
        self.anchor_real: torch.Tensor | None = None  # None until the first batch, which sets both anchors
        self.anchor_fake: torch.Tensor | None = None

    def _update(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        r, f = real.detach().float().mean(), fake.detach().float().mean()
        if self.anchor_real is None or self.anchor_fake is None:
            self.anchor_real, self.anchor_fake = r, f
        else:
            self.anchor_real = self.decay * self.anchor_real.to(r.device) + (1 - self.decay) * r
            self.anchor_fake = self.decay * self.anchor_fake.to(f.device) + (1 - self.decay) * f

    def __call__(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Update the anchors with this batch, then -> ``weight * R`` (a scalar with a graph to both logits)."""
        self._update(real_logits, fake_logits)
        real, fake = real_logits.float(), fake_logits.float()
        r = F.relu(real - self.anchor_fake).pow(2).mean() + F.relu(self.anchor_real - fake).pow(2).mean()
        return self.weight * r

    def state_dict(self) -> dict[str, torch.Tensor | float]:
        out: dict[str, torch.Tensor | float] = {"decay": self.decay}
        if self.anchor_real is not None and self.anchor_fake is not None:
            out.update(anchor_real=self.anchor_real.detach().cpu(), anchor_fake=self.anchor_fake.detach().cpu())
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor | float]) -> None:
        real, fake = state.get("anchor_real"), state.get("anchor_fake")
        self.anchor_real = torch.as_tensor(real, dtype=torch.float32) if real is not None else None
        self.anchor_fake = torch.as_tensor(fake, dtype=torch.float32) if fake is not None else None

    def __repr__(self) -> str:
        return f"LeCam(weight={self.weight}, decay={self.decay})"
