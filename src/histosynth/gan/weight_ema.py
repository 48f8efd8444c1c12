"""EMA of generator weights (``train.ema_decay``): samples and the bundle use the averaged generator.

An exponential moving average of G's parameters (Yazici et al. 2019, "The Unusual Effectiveness of Averaging
in GAN Training") usually gives smoother, better-FID samples at the cost of one parameter copy and one fused
lerp per step. Batch-norm running statistics are buffers, not averaged: they are copied from the live G.

The effective decay warms up as ``min(decay, (1 + t) / (10 + t))`` after ``t`` updates, so short runs are not
dominated by the random initialisation (with 0.999 the first ~1000 steps would otherwise be mostly init).

The copied batch-norm statistics belong to the live weights, not to the averaged ones: with decay 0.999 the two
differ by ~1000 steps of training, and the average then normalises with the wrong mean/variance (washed-out or
flat grey samples). Before the average is sampled or saved, :meth:`GeneratorEMA.standing_stats` re-estimates
them from the average's own activations (BigGAN's "standing statistics", Brock et al. 2019). A class-conditional
G's batch norms are shared by all classes, so those statistics depend on the class mix: they are estimated on the
mix G trained on (the training store's), not on uniform classes, which on the demo data (65 % skin, 3 % IHC)
normalised every layer with the wrong mean and variance.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch


class GeneratorEMA:
    def __init__(self, generator: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.model = copy.deepcopy(generator).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, generator: torch.nn.Module) -> None:
        d = self.current_decay()
        ema_p = list(self.model.parameters())
        live_p = [p.detach() for p in generator.parameters()]
        torch._foreach_lerp_(ema_p, live_p, 1.0 - d)
        for b_ema, b in zip(self.model.buffers(), generator.buffers()):
            b_ema.copy_(b)
        self.updates += 1

    @torch.no_grad()
    def standing_stats(self, latent_dim: int, num_classes: int = 0, batches: int = 16, batch_size: int = 64, seed: int = 0, class_freq: Sequence[float] | None = None) -> None:
        """Batch-norm running statistics of the averaged generator, as the cumulative mean over ``batches`` batches
        of its own outputs. Draws from a private seeded generator: the training RNG streams are untouched.

        ``class_freq``: how often each class was drawn in training (G's fakes take the real batch's labels). The
        batch norm is shared by all classes, so its statistics depend on the class mix; uniform when None."""
        bns = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not bns:
            return
        device = next(self.model.parameters()).device
        g = torch.Generator(device=device).manual_seed(int(seed))
        if num_classes and class_freq is not None:
            weights = torch.as_tensor(list(class_freq), dtype=torch.float64, device=device)
            if weights.numel() != num_classes or bool((weights < 0).any()) or float(weights.sum()) <= 0:
                raise ValueError(f"class_freq must be {num_classes} non-negative numbers with a positive sum, got {list(class_freq)}")
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
        self.model.train()
        try:
            for _ in range(batches):
                z = torch.randn(batch_size, latent_dim, generator=g, device=device)
                if num_classes:
                    if class_freq is None:
                        y = torch.randint(0, num_classes, (batch_size,), generator=g, device=device)
                    else:
                        y = torch.multinomial(weights, batch_size, replacement=True, generator=g)
                    self.model(z, y)
                else:
                    self.model(z)
        finally:
            for m, mom in zip(bns, momenta):
                m.momentum = mom
            self.model.eval()

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
