"""The :class:`~histosynth.gan.train.loop.TrainLoop` callbacks a training run is made of.

Each owns one concern: the weight average (:class:`EMAUpdate`), the progress bar (:class:`Progress`), metric
windows and where they go (:class:`MetricWindow` with its sinks: MLflow, the Prometheus pushgateway,
:class:`History`, the progress bar), epoch means (:class:`EpochMetrics`), sample grids (:class:`SampleGrids`)
and checkpoints (:class:`Checkpoints`). Their state that a checkpoint needs (metric sums, history) stays
readable, so a resumed run continues every window and curve exactly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from histosynth.gan.train.checkpoint import save_checkpoint
from histosynth.gan.train.loop import Callback, LoopState
from histosynth.gan.train.plots import sample_grid

log = logging.getLogger("histosynth.gan.train")

STEP_METRICS = ("loss_d", "loss_g", "d_real", "d_fake", "grad_norm_d", "grad_norm_g")


def _mlflow():
    """mlflow, imported when a run logs (it is slow to import, and benchmarks use callbacks without it)."""
    import mlflow

    return mlflow


class MetricMeter:
    """Sums of metric tensors on the device; synchronised (``.item()``) only when read."""

    def __init__(self, sums: dict[str, float] | None = None, count: int = 0):
        self.sums: dict[str, Any] = dict(sums or {})
        self.count = count

    def add(self, m: dict[str, torch.Tensor]) -> None:
        for k, v in m.items():
            self.sums[k] = self.sums.get(k, 0.0) + v.float()
        self.count += 1

    def means(self) -> dict[str, float]:
        return {k: float(v) / max(1, self.count) for k, v in self.sums.items()}

    def state(self) -> dict[str, Any]:
        return {"sums": {k: float(v) for k, v in self.sums.items()}, "count": self.count}


class MeterUpdate(Callback):
    """Adds every step's metrics to a meter: the trainers' per-step bookkeeping, alone (benchmarks)."""

    def __init__(self, meter: MetricMeter | None = None):
        self.meter = meter if meter is not None else MetricMeter()

    def on_step(self, state: LoopState, metrics: dict[str, torch.Tensor]) -> None:
        self.meter.add(metrics)


class EMAUpdate(Callback):
    """Moves the weight average (:class:`~histosynth.gan.weight_ema.GeneratorEMA`) after every update."""

    def __init__(self, ema: Any, model: torch.nn.Module):
        self.ema, self.model = ema, model

    def on_step(self, state: LoopState, metrics: dict[str, torch.Tensor]) -> None:
        self.ema.update(self.model)


@dataclass
class Logged:
    """One metric window: its means (``values``) at ``step``, over ``steps`` updates that took ``seconds``."""

    step: int
    values: dict[str, float]
    steps: int
    seconds: float


class MetricWindow(Callback):
    """Means of the step metrics every ``every`` updates and at the last one, plus ``img_per_s`` and ``extra()``
    (RL-EO's per-class rewards); ``check(values, step)`` raises on divergence, then every sink gets the window."""

    def __init__(
        self,
        every: int,
        images_per_step: int,
        sinks: Sequence[Callable[[Logged], Any]],
        *,
        check: Callable[[dict[str, float], int], None],
        extra: Callable[[], dict[str, float]] | None = None,
        meter: MetricMeter | None = None,
    ):
        self.every, self.images_per_step = int(every), int(images_per_step)
        self.sinks, self.check, self.extra = list(sinks), check, extra
        self.meter = meter if meter is not None else MetricMeter()  # a resumed run continues its window
        self.last: dict[str, float] = {}

    def on_start(self, state: LoopState) -> None:
        self.t0, self.images = time.perf_counter(), 0

    def on_step(self, state: LoopState, metrics: dict[str, torch.Tensor]) -> None:
        self.images += self.images_per_step
        self.meter.add(metrics)
        if state.step % self.every == 0 or state.step == state.total_steps:
            self._flush(state.step)

    def _flush(self, step: int) -> None:
        vals = self.meter.means()
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        vals["img_per_s"] = self.images / elapsed
        if self.extra is not None:
            vals.update(self.extra())
        self.check(vals, step)
        logged = Logged(step, vals, self.meter.count, elapsed)
        for sink in self.sinks:
            sink(logged)
        self.last = vals
        self.meter = MetricMeter()
        self.t0, self.images = time.perf_counter(), 0


def mlflow_metrics(logged: Logged) -> None:
    """MetricWindow sink: the window's means as MLflow metrics at its step."""
    _mlflow().log_metrics(logged.values, step=logged.step)


def pushgateway(pusher: Any, device: Any) -> Callable[[Logged], None]:
    """MetricWindow sink: the window to a :class:`~histosynth.monitoring.TrainingPusher`."""

    def push(logged: Logged) -> None:
        pusher.push(logged.step, logged.values, steps=logged.steps, seconds=logged.seconds, device=device)

    return push


class History:
    """MetricWindow sink: the rows the loss (and reward) curves are drawn from, kept in checkpoints."""

    def __init__(self, keys: Sequence[str], prefixes: tuple[str, ...] = (), rows: list[dict[str, Any]] | None = None):
        self.keys, self.prefixes = tuple(keys), prefixes
        self.rows: list[dict[str, Any]] = list(rows or [])

    def __call__(self, logged: Logged) -> None:
        self.rows.append({"step": logged.step, **{k: v for k, v in logged.values.items() if self._keep(k)}})

    def _keep(self, key: str) -> bool:
        return key in self.keys or any(key.startswith(p) for p in self.prefixes)


class Progress(Callback):
    """The tqdm bar (``show`` None: only on a terminal); with ``redirect_logging`` log lines print above it.
    As a MetricWindow sink it shows the window's ``postfix`` metrics."""

    def __init__(self, show: bool | None, desc: str, *, postfix: Sequence[str] = (), redirect_logging: bool = False):
        self.show, self.desc, self.postfix = show, desc, tuple(postfix)
        self.redirect_logging = redirect_logging
        self._stack = ExitStack()
        self.bar: Any = None

    def on_start(self, state: LoopState) -> None:
        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self.bar = tqdm(total=state.total_steps, initial=state.step, disable=(None if self.show is None else not self.show), desc=self.desc, unit="step", dynamic_ncols=True)
        if self.redirect_logging:
            self._stack.enter_context(logging_redirect_tqdm())

    def on_step(self, state: LoopState, metrics: dict[str, torch.Tensor]) -> None:
        self.bar.update(1)

    def __call__(self, logged: Logged) -> None:
        self.bar.set_postfix({k: f"{logged.values[k]:.3f}" for k in self.postfix}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self._stack.close()


class EpochMetrics(Callback):
    """Epoch means of the step metrics (+ ``extra()``: RL-EO's per-class rewards) as MLflow ``epoch/<name>`` at
    step = epoch, and one log line per epoch."""

    def __init__(self, extra: Callable[[], dict[str, float]] | None = None, meter: MetricMeter | None = None):
        self.extra = extra
        self.meter = meter if meter is not None else MetricMeter()  # a run resumed mid-epoch continues its sums

    def on_step(self, state: LoopState, metrics: dict[str, torch.Tensor]) -> None:
        self.meter.add(metrics)

    def on_epoch_end(self, state: LoopState) -> None:
        means = self.meter.means()
        if self.extra is not None:
            means.update(self.extra())
        _mlflow().log_metrics({f"epoch/{k}": v for k, v in means.items()}, step=state.epoch)
        log.info("epoch %d/%d step %d: %s", state.epoch, state.epochs, state.step, " ".join(f"{k}={means[k]:.4f}" for k in STEP_METRICS if k in means))
        self.meter = MetricMeter()

    def state(self, mid_epoch: bool) -> dict[str, Any]:
        return self.meter.state() if mid_epoch else {"sums": {}, "count": 0}


class SampleGrids(Callback):
    """A grid from fixed inputs every ``every`` epochs (``last_epoch``: also after the final one), logged to
    MLflow; ``before()`` runs before each grid (the weight average's batch-norm statistics)."""

    def __init__(self, model: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None, folder: Path, every: int, amp: Any, *, before: Callable[[], None] | None = None, last_epoch: bool = True):
        self.model, self.z, self.y, self.folder, self.every, self.amp = model, z, y, Path(folder), int(every), amp
        self.before, self.last_epoch = before, last_epoch

    def on_epoch_end(self, state: LoopState) -> None:
        if self.every > 0 and state.epoch % self.every == 0 and (self.last_epoch or not state.done):
            self.grid(f"epoch_{state.epoch:04d}.png")

    def grid(self, name: str) -> Path:
        if self.before is not None:
            self.before()
        path = sample_grid(self.model, self.z, self.y, self.folder / name, self.amp)
        _mlflow().log_artifact(str(path), "samples")
        return path


class Checkpoints(Callback):
    """``path`` (``last.pt``) every ``every`` epochs while the run goes on, and at its end; each is logged to
    MLflow. ``payload(state)`` says what a checkpoint holds."""

    def __init__(self, path: Path, every: int, payload: Callable[[LoopState], dict[str, Any]]):
        self.path, self.every, self.payload = Path(path), int(every), payload
        self.saved: Path | None = None

    def on_epoch_end(self, state: LoopState) -> None:
        if self.every > 0 and state.epoch % self.every == 0 and not state.done:
            self.save(state)

    def on_end(self, state: LoopState) -> None:
        self.save(state)

    def save(self, state: LoopState) -> Path:
        self.saved = save_checkpoint(self.path, self.payload(state))
        _mlflow().log_artifact(str(self.saved), "checkpoints")
        return self.saved
