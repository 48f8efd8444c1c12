"""The training loop: epochs of shuffled batches -> the update step -> callback hooks.

The loop knows nothing of GANs, MLflow or files: it walks the epochs of a
:class:`~histosynth.data.loader.BatchSource` in groups of ``group`` batches (a GAN's ``optim.d_steps``), calls
``step(group) -> metrics`` once per group and tells its callbacks. Everything else a run does (metric logging,
progress bar, sample grids, checkpoints, the weight average) is a :class:`Callback`, so the GAN trainer, the
DDPM trainer and the benchmarks run the same loop with the callbacks they need.

Hooks, in the order of the callback list: ``on_start`` when :meth:`TrainLoop.run` starts; ``on_step`` after
every update; ``on_epoch_end`` after the last group of an epoch (the state's ``epoch`` already counts it and
the next epoch's shuffle is not drawn yet); ``on_end`` once the run reached its end (not after an error or a
``steps`` limit); ``close`` always, last (like a ``finally``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class LoopState:
    """Where a run is: what a checkpoint must hold to continue it exactly (with the RNG and data states)."""

    total_steps: int
    epochs: int
    steps_per_epoch: int
    epoch: int = 0  # completed epochs
    step: int = 0  # updates done
    batch: int = 0  # the next group of the current epoch
    perm: torch.Tensor | None = None  # the current epoch's shuffle (None: draw one when the epoch starts)

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps or self.epoch >= self.epochs

    @property
    def mid_epoch(self) -> bool:
        return self.batch > 0


class Callback:
    """No-op hooks; subclasses override the ones they need (see the module docstring for when each runs)."""

    def on_start(self, state: LoopState) -> None:
        pass

    def on_step(self, state: LoopState, metrics: dict[str, torch.Tensor]) -> None:
        pass

    def on_epoch_end(self, state: LoopState) -> None:
        pass

    def on_end(self, state: LoopState) -> None:
        pass

    def close(self) -> None:
        pass


class TrainLoop:
    """``run()`` steps ``state`` to its end; ``run(steps=n)`` does at most ``n`` more updates (benchmarks)."""

    def __init__(self, step: Callable[[list[Batch]], dict[str, Any]], source: Any, state: LoopState, callbacks: Sequence[Callback] = (), *, group: int = 1):
        self.step, self.source, self.state = step, source, state
        self.callbacks = list(callbacks)
        self.group = int(group)

    def _fire(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def run(self, steps: int | None = None) -> LoopState:
        s = self.state
        stop = s.step + steps if steps is not None else None
        try:
            self._fire("on_start", s)
            while not s.done and (stop is None or s.step < stop):
                self._epoch(s, stop)
        finally:
            self._fire("close")
        if s.done:
            self._fire("on_end", s)
        return s

    def _epoch(self, s: LoopState, stop: int | None) -> None:
        """The rest of the current epoch (or up to ``stop``); ``on_epoch_end`` when it is complete."""
        if s.perm is None:
            s.perm = self.source.permutation()
        batches = self.source.batches(s.perm, s.batch * self.group)
        while s.batch < s.steps_per_epoch and s.step < s.total_steps and (stop is None or s.step < stop):
            metrics = self.step([(x, y) for _, x, y in (next(batches) for _ in range(self.group))])
            s.step += 1
            s.batch += 1
            self._fire("on_step", s, metrics)
        if s.batch >= s.steps_per_epoch:
            s.epoch += 1
            s.perm, s.batch = None, 0
            self._fire("on_epoch_end", s)
