"""One GAN update: ``d_steps`` discriminator updates (separate real and fake mini-batches) then one
generator update, with AMP, loss scaling, gradient clipping (by norm or by value), an optional gradient
penalty and DiffAugment (:mod:`histosynth.gan.diffaugment`) on every image D sees: real and fake in D's update, fake
in G's.

The loop is architecture-independent: any (G, D) pair with ``G(z[, y])`` and ``D(x[, y]) -> logits (B,)``.
With an RL-EO ``reward`` (:mod:`histosynth.gan.rl_eo`) D's loss takes the similarity scores as its ``mode``
says; the logged ``loss_d`` is the loss D minimised and ``loss_d_gan`` is the plain ``L_D``.

A discriminator with an objective of its own (MASAN: SAN's split terms plus reconstruction,
:mod:`histosynth.gan.masan.objective`) comes as ``d_objective(D, real_aug, fake_aug, y) -> DTerms``: it replaces
the two logit passes and ``loss_d_real/fake``, and its ``extra`` term is added to ``loss_d``. G's update is the
same for every architecture: the loss on D's plain output.

Data-parallel runs pass ``sync`` (:meth:`histosynth.distributed.World.average_gradients`): it averages each
net's gradients over the processes right after its backward, before unscaling, clipping and the step, so the
grad norms, the clipping and the loss scaler see the global gradient on every process.

A discriminator whose front is frozen (Projected GAN: ``D.project(x) -> maps`` computes no trained weights,
``D.judge(maps, y) -> logits`` does) has its front run once per fake batch: the maps of the augmented fakes are
judged detached in D's update and, with their graph to G, by the updated heads in G's. G's update then sees the
same augmented fakes D just did (as the reference DCGAN loop reuses the same fakes) and the frozen network runs
twice per step instead of three times (``share_front=False``: the old way, for comparison).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from histosynth.device import Amp
from histosynth.gan.lecam import LeCam
from histosynth.gan.losses import GANLoss, gradient_penalty
from histosynth.gan.rl_eo import RewardOut, RLEOReward

if TYPE_CHECKING:
    from histosynth.gan.masan.objective import DTerms


def clip_and_norm(params: list[nn.Parameter], limit: float, mode: str = "norm") -> torch.Tensor:
    """Total L2 grad norm (before clipping). When ``limit`` > 0, ``norm`` rescales the gradient to a total norm
    of at most ``limit``; ``value`` clamps every element to [-limit, limit] (which also changes its direction)."""
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    if mode == "value":
        total = nn.utils.clip_grad_norm_(grads, math.inf)
        if limit > 0:
            nn.utils.clip_grad_value_(grads, limit)
        return total
    return nn.utils.clip_grad_norm_(grads, limit if limit > 0 else math.inf)


class GANStep:
    """Callable on ``[(real, y), ...]`` (``d_steps`` real batches); returns detached metric tensors.

    Fakes are conditioned on the real batch's class ids (so the class mix follows the data). The last D
    step's fake batch is reused for the G update, as in the reference DCGAN loop; D's parameters are
    frozen during the G backward (no D weight gradients are computed there).
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        loss: GANLoss,
        *,
        latent_dim: int,
        conditional: bool = False,
        amp: Amp,
        grad_clip: float = 0.0,
        clip_mode: str = "norm",
        gp_weight: float = 0.0,
        scaler_g: torch.amp.GradScaler | None = None,
        scaler_d: torch.amp.GradScaler | None = None,
        reward: RLEOReward | None = None,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        d_objective: Callable[..., DTerms] | None = None,
        sync: Callable[[list[nn.Parameter]], None] | None = None,
        share_front: bool = True,
        lecam: LeCam | None = None,
    ):
        self.G, self.D = generator, discriminator
        self.opt_g, self.opt_d = opt_g, opt_d
        self.loss = loss
        self.latent_dim = int(latent_dim)
        self.conditional = bool(conditional)
        self.amp = amp
        self.grad_clip = float(grad_clip)
        self.clip_mode = clip_mode
        self.gp_weight = float(gp_weight)
        self.reward = reward
        self.augment = augment if augment else (lambda x: x)
        self.d_objective = d_objective
        self.sync = sync if sync is not None else (lambda params: None)
        self.lecam = lecam
        self.scaler_g = scaler_g if scaler_g is not None else amp.scaler()
        self.scaler_d = scaler_d if scaler_d is not None else amp.scaler()
        self.g_params = [p for p in generator.parameters() if p.requires_grad]
        self.d_params = [p for p in discriminator.parameters() if p.requires_grad]
        frozen_front = callable(getattr(discriminator, "project", None)) and callable(getattr(discriminator, "judge", None))
        self.share_front = bool(share_front and frozen_front and d_objective is None and reward is None and self.gp_weight == 0)

    def _d(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.D(x, y) if self.conditional else self.D(x)

    def _judge(self, maps: list[torch.Tensor], y: torch.Tensor | None) -> torch.Tensor:
        return self.D.judge(maps, y) if self.conditional else self.D.judge(maps)

    def _g(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.G(z, y) if self.conditional else self.G(z)

    def _acting_fake_term(self, r: RewardOut, fake_logits: torch.Tensor) -> torch.Tensor:
        """D's fake term with the scores in it (``weighted`` / ``soft-label``; equations: :mod:`histosynth.gan.rl_eo`)."""
        w, s = self.reward.weight, r.scores
        if self.reward.mode == "weighted":
            return ((1.0 - w * s) * self.loss.fake_terms(fake_logits)).mean()
        return self.loss.fake_terms_to(fake_logits, w * s).mean()

    def __call__(self, batches: Sequence[tuple[torch.Tensor, torch.Tensor | None]]) -> dict[str, torch.Tensor]:
        m: dict[str, torch.Tensor] = {}
        fake = y = fake_maps = None
        for i, (x, labels) in enumerate(batches):
            y = labels if self.conditional else None
            z = torch.randn(x.shape[0], self.latent_dim, device=x.device)
            with self.amp.autocast():
                fake = self._g(z, y)
            # RL-EO: the SNN scores (real_i, fake_i) beside D's forward passes (a side stream on CUDA)
            pending = self.reward.start(x, fake.detach(), labels) if self.reward is not None else None
            terms = None
            with self.amp.autocast():
                if self.d_objective is not None:
                    terms = self.d_objective(self.D, self.augment(x), self.augment(fake.detach()), y)
                    real_logits, fake_logits = terms.real_logits, terms.fake_logits
                elif self.share_front:
                    real_logits = self._judge(self.D.project(self.augment(x)), y)
                    with torch.set_grad_enabled(i == len(batches) - 1):  # only the last fake batch trains G
                        fake_maps = self.D.project(self.augment(fake))
                    fake_logits = self._judge([f.detach() for f in fake_maps], y)
                else:
                    real_logits = self._d(self.augment(x), y)  # separate real and fake mini-batches (Salimans et al.)
                    fake_logits = self._d(self.augment(fake.detach()), y)
            loss_real = self.loss.d_real(real_logits) if terms is None else terms.loss_real
            loss_fake = self.loss.d_fake(fake_logits) if terms is None else terms.loss_fake
            r = pending.result() if pending is not None and self.reward.mode != "paper" else None
            loss_d = loss_real + (self._acting_fake_term(r, fake_logits) if r is not None else loss_fake)
            if terms is not None:
                loss_d = loss_d + terms.extra
                m.update(terms.metrics)
            loss_d_gan = loss_real + loss_fake
            if self.lecam is not None:
                lc = self.lecam(real_logits, fake_logits)
                loss_d = loss_d + lc
                m["lecam"] = lc.detach()
            if self.gp_weight > 0:
                gp = gradient_penalty(self.D, x, fake, y)
                loss_d = loss_d + self.gp_weight * gp
                loss_d_gan = loss_d_gan + self.gp_weight * gp
                m["gp"] = gp.detach()
            if pending is not None:
                r = pending.result()
                assert not (r.reward.requires_grad or r.scores.requires_grad), "the RL-EO reward must carry no graph (frozen SNN, detached fakes)"
                m["loss_d_gan"] = loss_d_gan.detach()
                m["rl_eo/reward"] = r.reward
                m["rl_eo/similarity"] = r.similarity
                if self.reward.mode == "paper":
                    loss_d = loss_d - r.reward  # the paper: D minimises L_D - reward (no gradient: see rl_eo)
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler_d.scale(loss_d).backward()
            self.sync(self.d_params)
            self.scaler_d.unscale_(self.opt_d)
            m["grad_norm_d"] = clip_and_norm(self.d_params, self.grad_clip, self.clip_mode).detach()
            self.scaler_d.step(self.opt_d)
            self.scaler_d.update()
            m["loss_d"] = loss_d.detach()
            m["loss_d_real"] = loss_real.detach()
            m["loss_d_fake"] = loss_fake.detach()
            m["d_real"] = torch.sigmoid(real_logits.detach().float()).mean()
            m["d_fake"] = torch.sigmoid(fake_logits.detach().float()).mean()

        assert fake is not None, "GANStep needs at least one real batch"
        for p in self.d_params:
            p.requires_grad_(False)
        try:
            with self.amp.autocast():
                g_logits = self._judge(fake_maps, y) if self.share_front else self._d(self.augment(fake), y)
            loss_g = self.loss.g_loss(g_logits)
            self.opt_g.zero_grad(set_to_none=True)
            self.scaler_g.scale(loss_g).backward()
        finally:
            for p in self.d_params:
                p.requires_grad_(True)
        self.sync(self.g_params)
        self.scaler_g.unscale_(self.opt_g)
        m["grad_norm_g"] = clip_and_norm(self.g_params, self.grad_clip, self.clip_mode).detach()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        m["loss_g"] = loss_g.detach()
        m["d_fake_g"] = torch.sigmoid(g_logits.detach().float()).mean()
        return m
