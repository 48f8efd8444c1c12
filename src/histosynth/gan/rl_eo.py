"""RL-EO: the reward from a frozen similarity network (MFT-SNN) in the discriminator's objective.

At every discriminator step each real patch is paired with a fake one and scored ``s_i = S(real_i, fake_i)``
in [0, 1] by the frozen MFT-SNN; ``w`` is ``rl_eo.weight`` (0.3 in the paper). The generator's loss never
contains the reward, in any mode. ``rl_eo.mode`` says how the scores enter D's loss
(``l_real_i``, ``l_fake_i``: the loss's per-sample terms, :mod:`histosynth.gan.losses`):

``paper`` -- the paper as written::

    L_D - w * mean_i(s_i)

  **Inert: it carries no gradient.** The reward depends only on the real batch, the detached fakes and the
  frozen SNN's weights, so ``d reward / d theta_D = d reward / d theta_G = 0``: it shifts the *value* of D's
  loss and leaves every gradient, clipping decision and update as in the plain GAN (on CPU with deterministic
  kernels the weights are bit-identical to the same-seed run without it). A monitor of how similar the SNN
  finds fakes and reals (the reward curve), not an optimisation signal.

``weighted`` -- the score scales each fake's term, so D pushes less on fakes the SNN already finds realistic::

    mean_i(l_real_i) + mean_i((1 - w * s_i) * l_fake_i)

``soft-label`` -- the score becomes D's target for the fake (``bce`` and ``lsgan``, the losses with a target)::

    mean_i(l_real_i) + mean_i(l_fake(D(fake_i), target = w * s_i))      (instead of target 0)

In both acting modes ``s_i`` is a constant (no graph) multiplying or targeting a term that depends on D's
parameters, so the reward reaches ``theta_D`` and only ``theta_D``; they need ``w <= 1`` (a weight or target
in [0, 1]). Every run is tagged ``rl_eo.mode`` and ``rl_eo.reward_gradient``; the logged ``loss_d`` is the
loss D minimised and ``loss_d_gan`` the plain ``L_D``.

Cost: the SNN runs under ``torch.no_grad`` on the training device, in half precision on CUDA when
``rl_eo.half`` (fp16 autocast, which keeps reductions such as norms in fp32; after a non-finite score the run
falls back to fp32), on a side CUDA stream beside D's forward passes, with no host synchronisation per step.
``benchmarks/rl_eo_step_overhead.py`` measures the step-time overhead.

The similarity network is injected: anything matching :data:`Similarity`, ``(a, b) -> (N,)`` scores in [0, 1]
for NCHW image batches in [-1, 1]. This module does not know where it comes from (so the GAN code does not
depend on the SNN package); the trainer loads the trained MFT-SNN named by ``rl_eo.snn``
(:mod:`histosynth.gan.train.similarity`), tests and benchmarks pass their own.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from histosynth.config.gan import RL_EO_MODES, check_mode  # noqa: F401  (check_mode: validated with the config)
from histosynth.errors import HistosynthError

log = logging.getLogger("histosynth.gan.rl_eo")

Similarity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``similarity(a, b) -> (N,)`` in [0, 1] for two NCHW image batches in [-1, 1] of the same shape."""

MODES = RL_EO_MODES
REWARD_GRADIENT = {
    "paper": "none: constant wrt D and G parameters (frozen SNN, detached fakes); D's updates equal the plain GAN's",
    "weighted": "D only: (1 - w*s_i) scales D's fake-loss term per pair; G's loss has no reward",
    "soft-label": "D only: D's target for fake i is w*s_i instead of 0; G's loss has no reward",
}
RANGE_TOL = 1e-3  # similarity scores this far outside [0, 1] are accepted (rounding) and clamped


def safe_name(name: str) -> str:
    """A class name usable inside an MLflow metric key (letters, digits, _ - . / and space only)."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(name)) or "_"


@dataclass
class RewardOut:
    reward: torch.Tensor  # scalar, no grad: w * mean(sim)
    similarity: torch.Tensor  # scalar: mean(sim)
    scores: torch.Tensor  # (N,), no grad: s_i clamped to [0, 1]; 0 where the score was not finite


class PendingReward:
    """A reward being computed on a side CUDA stream; :meth:`result` makes the current stream wait for it."""

    def __init__(self, out: RewardOut, stream: Any = None):
        self._out, self._stream = out, stream

    def result(self) -> RewardOut:
        if self._stream is not None:
            torch.cuda.current_stream(self._stream.device).wait_stream(self._stream)
            self._stream = None
        return self._out


class RLEOReward:
    """Computes ``w * mean(S(real_i, fake_i))`` and the scores ``s_i`` per D step (``mode`` says how the step uses
    them) and accumulates the similarity per (real) class.

    Per-class sums live on the device (no host sync per step) in two accumulators: the metric-logging window
    and the epoch; :meth:`window_rewards` / :meth:`epoch_rewards` read and reset them. With an unconditional
    generator the class is the real patch's (the fake of the pair has no class).

    On CUDA the SNN runs on a side stream (``overlap``): :meth:`start` queues it right after the fakes exist,
    so it runs beside D's forward passes, and the step waits for it (GPU-side, no host sync) only where it
    subtracts the reward. From the third call on (``graph``) the whole reward computation is replayed as one
    CUDA graph: a DCGAN step is bound by the host launching small kernels, so the SNN's ~100 kernel launches
    would cost more than its GPU time; a network that cannot be captured falls back to eager calls with a
    warning. Nothing in a step synchronises with the host: a score that is not finite (fp16 overflow) is left
    out of the mean and counted on the device; at the next read the run warns and switches the SNN to fp32.
    """

    def __init__(
        self,
        similarity: Similarity,
        weight: float = 0.3,
        *,
        mode: str = "paper",
        classes: list[str] | None = None,
        device: torch.device | str = "cpu",
        half: bool = True,
        overlap: bool = True,
        graph: bool = True,
    ):
        check_mode(mode, weight)
        self.mode = mode
        self.similarity = similarity
        self.weight = float(weight)
        self.classes = list(classes or ["all"])
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        self.half = bool(half) and cuda
        self.stream = torch.cuda.Stream(self.device) if cuda and overlap else None
        self.graph = bool(graph) and self.stream is not None
        self._graphs: dict[tuple, tuple] = {}
        self._graph_failed = False
        self._calls = 0
        self._checked = False
        n = len(self.classes)
        self.window = torch.zeros(2, n, device=self.device)  # row 0: similarity sums, row 1: counts
        self.epoch = torch.zeros(2, n, device=self.device)
        self.nonfinite = torch.zeros((), dtype=torch.long, device=self.device)
        freeze(similarity)

    def _score(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        real, fake = real.float(), fake.float()  # fakes may come out of the GAN's bf16 autocast
        ctx = torch.autocast("cuda", dtype=torch.float16) if self.half else contextlib.nullcontext()
        with torch.no_grad(), ctx:
            sim = self.similarity(real, fake)
        return sim.detach().float()

    def _check(self, sim: torch.Tensor, n: int) -> None:
        """Once per run (one host sync): the similarity network keeps its contract."""
        if sim.shape != (n,):
            raise HistosynthError(f"the similarity network returned shape {tuple(sim.shape)} for {n} pairs, expected ({n},)", "its .similarity(a, b) must return one score per pair")
        ok = sim[torch.isfinite(sim)]
        if ok.numel():
            lo, hi = float(ok.min()), float(ok.max())
            if not (lo >= -RANGE_TOL and hi <= 1 + RANGE_TOL):
                raise HistosynthError(f"similarity scores must lie in [0, 1], got [{lo:.4f}, {hi:.4f}]", "map cosine similarity c to (c + 1) / 2")
        self._checked = True

    def _compute(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None) -> RewardOut:
        if labels is None or len(self.classes) == 1:
            labels = None
        self._calls += 1
        # fp32 unless _score asks for fp16: a caller's autocast (the GAN's bf16) must not reach the reward math
        with torch.autocast(self.device.type, enabled=False):
            if self.graph and self._checked and self._calls > 2 and not self._graph_failed:
                return self._replay(real, fake, labels)
            return self._eager(real, fake, labels)

    def _replay(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None) -> RewardOut:
        key = (tuple(real.shape), labels is not None, self.half)
        entry = self._graphs.get(key)
        if entry is None:
            try:
                entry = self._graphs[key] = self._capture(real, fake, labels)
            except Exception as e:  # noqa: BLE001 - any capture failure: run eagerly
                self._graph_failed = True
                log.warning("the similarity network cannot be captured as a CUDA graph (%s: %s): running it eagerly", e.__class__.__name__, str(e).splitlines()[0] if str(e) else "")
                return self._eager(real, fake, labels)
        graph, (a, b, lab), (reward, mean, scores) = entry
        a.copy_(real)
        b.copy_(fake)
        if lab is not None:
            lab.copy_(labels)
        graph.replay()
        return RewardOut(reward=reward.clone(), similarity=mean.clone(), scores=scores.clone())

    def _capture(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None) -> tuple:
        """Record :meth:`_eager` on static input buffers (the eager calls before were the warm-up)."""
        a, b = real.detach().float().clone(), fake.detach().float().clone()
        lab = labels.detach().clone() if labels is not None else None
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            out = self._eager(a, b, lab)
        return graph, (a, b, lab), (out.reward, out.similarity, out.scores)

    def _eager(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None) -> RewardOut:
        sim = self._score(real, fake)
        if not self._checked:
            self._check(sim, real.shape[0])
        finite = torch.isfinite(sim)
        sim = torch.where(finite, sim, torch.zeros_like(sim)).clamp(0.0, 1.0)
        self.nonfinite += (~finite).sum()
        if labels is not None:
            # one-hot matmul, not index_add_: deterministic, no host sync, capturable
            onehot = (labels.to(self.device).long()[:, None] == torch.arange(len(self.classes), device=self.device)[None, :]).float()
        else:
            onehot = torch.ones(sim.shape[0], 1, device=self.device)
        add = torch.stack([sim, finite.float()]) @ onehot
        self.window += add
        self.epoch += add
        mean = sim.sum() / finite.sum().clamp(min=1)
        return RewardOut(reward=self.weight * mean, similarity=mean, scores=sim)

    def start(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None = None) -> PendingReward:
        """Queue the reward for (real_i, fake_i); ``fake`` is detached whatever the caller passes (G never sees it)."""
        real, fake = real.detach(), fake.detach()
        if self.stream is None:
            return PendingReward(self._compute(real, fake, labels))
        self.stream.wait_stream(torch.cuda.current_stream(self.device))  # the inputs are ready
        with torch.cuda.stream(self.stream):
            out = self._compute(real, fake, labels)
        for t in (real, fake, labels):
            if t is not None and t.is_cuda:
                t.record_stream(self.stream)  # keep their memory until the side stream is done with it
        return PendingReward(out, self.stream)

    def __call__(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None = None) -> RewardOut:
        return self.start(real, fake, labels).result()

    def _sync(self) -> None:
        if self.stream is not None:
            torch.cuda.current_stream(self.device).wait_stream(self.stream)

    def _read(self, acc: torch.Tensor) -> dict[str, float]:
        self._sync()
        sums, counts = acc.detach().cpu().tolist()
        out = {f"rl_eo/reward/{safe_name(c)}": self.weight * s / k for c, s, k in zip(self.classes, sums, counts) if k > 0}
        acc.zero_()
        bad = int(self.nonfinite)
        if bad:
            self.nonfinite.zero_()
            out["rl_eo/nonfinite_pairs"] = float(bad)
            if self.half:
                self.half = False
                log.warning("the similarity network gave %d non-finite scores in half precision (left out of the reward): using fp32 from now on", bad)
            else:
                log.warning("the similarity network gave %d non-finite scores (left out of the reward)", bad)
        return out

    def window_rewards(self) -> dict[str, float]:
        """``rl_eo/reward/<class>`` = w * mean similarity of that class's pairs since the last call."""
        return self._read(self.window)

    def epoch_rewards(self) -> dict[str, float]:
        return self._read(self.epoch)

    def state_dict(self) -> dict[str, Any]:
        self._sync()
        return {"window": self.window.detach().cpu().clone(), "epoch": self.epoch.detach().cpu().clone(), "classes": list(self.classes), "half": self.half}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state.get("classes", [])) != self.classes:
            log.warning("RL-EO classes changed since the checkpoint: reward accumulators restart")
            return
        self.window.copy_(state["window"].to(self.device))
        self.epoch.copy_(state["epoch"].to(self.device))
        self.half = self.half and bool(state.get("half", True))


def freeze(similarity: Similarity) -> None:
    """Eval mode and no parameter gradients for whatever module backs ``similarity`` (a module or its bound method)."""
    owner = similarity if isinstance(similarity, torch.nn.Module) else getattr(similarity, "__self__", None)
    for m in (owner, getattr(owner, "model", None), getattr(owner, "encoder", None)):
        if isinstance(m, torch.nn.Module):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


class CosineSimilarity(torch.nn.Module):
    """``(cos(encoder(a), encoder(b)) + 1) / 2`` on flattened features: a frozen similarity from any encoder.

    Used for tests and the cost benchmark (with a VGG-16-shaped encoder it costs what the MFT-SNN costs);
    not a trained similarity.
    """

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder
        freeze(self)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        n = a.shape[0]
        e = self.encoder(torch.cat([a, b])).flatten(1)
        return (torch.nn.functional.cosine_similarity(e[:n].float(), e[n:].float(), dim=1) + 1.0) / 2.0

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self(a, b)


def vgg16_standin(device: torch.device | str = "cpu", seed: int = 0) -> CosineSimilarity:
    """VGG-16 conv layers with random (seeded) weights + cosine: the MFT-SNN encoder's *cost*, not its scores."""
    from torchvision.models import vgg16

    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream alone
        torch.manual_seed(seed)
        encoder = vgg16(weights=None).features
    return CosineSimilarity(encoder).to(device)
