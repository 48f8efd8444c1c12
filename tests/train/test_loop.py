"""The training loop alone: which hooks fire when, groups of batches, stopping and continuing."""

from __future__ import annotations

import pytest
import torch

from histosynth.gan.train.callbacks import MeterUpdate
from histosynth.gan.train.loop import Callback, LoopState, TrainLoop


class FakeSource:
    """``n`` one-image batches per epoch; image i of epoch e holds the value 100 * e + i."""

    def __init__(self, n: int):
        self.n, self.epochs = n, 0

    def permutation(self) -> torch.Tensor:
        self.epochs += 1
        return torch.arange(self.n) + 100 * self.epochs

    def batches(self, perm: torch.Tensor, start: int = 0):
        for i in range(start, self.n):
            yield i, perm[i : i + 1].float(), torch.zeros(1)


class Recorder(Callback):
    def __init__(self):
        self.calls: list[tuple] = []

    def on_start(self, state):
        self.calls.append(("start", state.step))

    def on_step(self, state, metrics):
        self.calls.append(("step", state.step, metrics["x"]))

    def on_epoch_end(self, state):
        self.calls.append(("epoch", state.epoch, state.step, state.batch, state.perm))

    def on_end(self, state):
        self.calls.append(("end", state.step))

    def close(self):
        self.calls.append(("close",))


def step(group):
    return {"x": [float(x) for x, _ in group]}


@pytest.mark.unit
def test_hooks_fire_in_order_with_groups_of_batches():
    rec = Recorder()
    state = LoopState(total_steps=5, epochs=3, steps_per_epoch=2)
    TrainLoop(step, FakeSource(4), state, [rec], group=2).run()
    assert rec.calls == [
        ("start", 0),
        ("step", 1, [100.0, 101.0]), ("step", 2, [102.0, 103.0]), ("epoch", 1, 2, 0, None),
        ("step", 3, [200.0, 201.0]), ("step", 4, [202.0, 203.0]), ("epoch", 2, 4, 0, None),
        ("step", 5, [300.0, 301.0]),
        ("close",), ("end", 5),
    ]  # fmt: skip
    assert (state.epoch, state.step, state.batch, state.mid_epoch, state.done) == (2, 5, 1, True, True)


@pytest.mark.unit
def test_a_limited_run_stops_mid_epoch_and_continues_where_it_stopped():
    source, rec, meter = FakeSource(3), Recorder(), MeterUpdate()
    loop = TrainLoop(step, source, LoopState(total_steps=100, epochs=100, steps_per_epoch=3), [rec])
    loop.run(steps=2)
    assert ("end", 2) not in rec.calls and rec.calls[-1] == ("close",) and loop.state.batch == 2
    loop.run(steps=2)
    xs = [c[2] for c in rec.calls if c[0] == "step"]
    assert xs == [[100.0], [101.0], [102.0], [200.0]]  # the same epoch's shuffle, then a new one
    TrainLoop(lambda g: {"x": torch.tensor(1.0)}, FakeSource(3), LoopState(10, 10, 3), [meter]).run(steps=4)
    assert meter.meter.count == 4


@pytest.mark.unit
def test_close_runs_after_an_error_and_on_end_does_not():
    rec = Recorder()

    def failing(group):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        TrainLoop(failing, FakeSource(2), LoopState(4, 2, 2), [rec]).run()
    assert rec.calls == [("start", 0), ("close",)]


@pytest.mark.unit
def test_metric_window_means_checks_and_sinks():
    from histosynth.gan.train.callbacks import History, MetricWindow, pushgateway

    pushed, seen = [], []

    class FakePusher:
        def push(self, step, values, steps=0, seconds=0.0, device=None):
            pushed.append((step, dict(values), steps, device))

    def check(values, step):
        seen.append(step)

    history = History(("loss",), ("rl/",))
    window = MetricWindow(2, 8, [pushgateway(FakePusher(), "cpu"), history], check=check, extra=lambda: {"rl/r": 0.5, "other": 1.0})
    state = LoopState(total_steps=3, epochs=1, steps_per_epoch=3)
    window.on_start(state)
    for s, loss in ((1, 1.0), (2, 3.0), (3, 5.0)):
        state.step = s
        window.on_step(state, {"loss": torch.tensor(loss), "gn": torch.tensor(0.0)})
    assert seen == [2, 3]  # every 2 steps and at the last
    assert [(p[0], p[1]["loss"], p[2], p[3]) for p in pushed] == [(2, 2.0, 2, "cpu"), (3, 5.0, 1, "cpu")]
    assert history.rows == [{"step": 2, "loss": 2.0, "rl/r": 0.5}, {"step": 3, "loss": 5.0, "rl/r": 0.5}]
    assert window.last["img_per_s"] > 0 and window.meter.count == 0
