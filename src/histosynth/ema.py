"""EMA of generator weights (``train.ema_decay``): samples and the bundle use the averaged generator.

An exponential moving average of G's parameters (Yazici et al. 2019, "The Unusual Effectiveness of Averaging
in GAN Training") usually gives smoother, better-FID samples at the cost of one parameter copy and one fused
lerp per step. Batch-norm running statistics are buffers, not averaged: they are copied from the live G.

The effective decay warms up as ``min(decay, (1 + t) / (10 + t))`` after ``t`` updates, so short runs are not
dominated by the random initialisation (with 0.999 the first ~1000 steps would otherwise be mostly init).
"""

from __future__ import annotations

import copy
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

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
