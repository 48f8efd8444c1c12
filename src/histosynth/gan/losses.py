"""Adversarial losses by name, independent of the architecture.

Every loss takes discriminator *logits* (raw outputs, shape (B,)) and is computed in fp32 (under AMP the
logits are cast up first). The discriminator terms are split into ``d_real`` and ``d_fake`` because D sees
separate real and fake mini-batches (Salimans et al. 2016): each batch gets its own forward pass (and its
own batch-norm statistics), and the two terms are summed (``d_loss``).

=========  ======================================================  ==========================================
name       discriminator                                           generator
=========  ======================================================  ==========================================
bce        BCE(D(x), real_label) + BCE(D(G(z)), 0)                 non-saturating: -mean(log sigmoid(D(G(z))))
hinge      mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))          -mean(D(G(z)))
lsgan      0.5 mean((D(x) - 1)^2) + 0.5 mean(D(G(z))^2)            0.5 mean((D(G(z)) - 1)^2)
wgan       mean(D(G(z))) - mean(D(x))  (+ gradient penalty)        -mean(D(G(z)))
ganetic    L(1, p_real) + L(0, p_fake)                             L(1, p_fake)
=========  ======================================================  ==========================================

GANetic (Akhmedova & Körber): p = sigmoid(D(x)), L(y, p) = mean(p^3 + sqrt(|3.985 y / (p + eps)| + eps)).
``real_label`` < 1 is one-sided label smoothing; it applies to ``bce`` only (the others have no target).

Each loss is defined per sample (``real_terms``, ``fake_terms``, ``g_terms``: logits (B,) -> (B,)) and the
batch losses are their means, so a caller can weight D's fake terms per sample (RL-EO ``weighted``). Losses
with a target for fakes (``bce``, ``lsgan``) also give ``fake_terms_to(logits, targets)``: the fake term
against per-sample targets instead of 0 (RL-EO ``soft-label``).
The gradient penalty (Gulrajani et al. 2017) is separate (:func:`gradient_penalty`) and added by the
trainer whenever ``loss.gp_weight > 0``, whatever the loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from histosynth.errors import ConfigError

LOSSES: dict[str, type[GANLoss]] = {}


def register(name: str) -> Callable[[type[GANLoss]], type[GANLoss]]:
    def deco(cls: type[GANLoss]) -> type[GANLoss]:
        cls.name = name
        LOSSES[name] = cls
        return cls

    return deco


class GANLoss:
    """Base class: subclasses define the per-sample terms ``real_terms``, ``fake_terms`` and ``g_terms``
    (logits (B,) -> (B,), fp32); ``d_real``, ``d_fake`` and ``g`` are their batch means."""

    name = "base"

    def real_terms(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fake_terms(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_terms(self, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fake_terms_to(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """D's fake term per sample against ``targets`` (B,) in [0, 1] instead of the fake target 0."""
        raise ConfigError(f"loss.name={self.name} has no target for fakes, so it cannot take soft labels", "use loss.name=bce or lsgan, or rl_eo.mode=weighted")

    def d_real(self, logits: torch.Tensor) -> torch.Tensor:
        return self.real_terms(logits).mean()

    def d_fake(self, logits: torch.Tensor) -> torch.Tensor:
        return self.fake_terms(logits).mean()

    def g(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return self.g_terms(fake_logits).mean()

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return self.d_real(real_logits) + self.d_fake(fake_logits)

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return self.g(fake_logits)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


@register("bce")
class BCELoss(GANLoss):
    """Standard GAN loss with one-sided label smoothing on real and the non-saturating generator loss."""

    def __init__(self, real_label: float = 1.0):
        if not 0.0 < real_label <= 1.0:
            raise ConfigError(f"loss.real_label={real_label} must be in (0, 1]", "use 0.9 for one-sided smoothing or 1.0 for none")
        self.real_label = float(real_label)

    def real_terms(self, logits):
        logits = logits.float()
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, self.real_label), reduction="none")

    def fake_terms(self, logits):
        return self.fake_terms_to(logits, torch.zeros_like(logits, dtype=torch.float32))

    def fake_terms_to(self, logits, targets):
        return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")

    def g_terms(self, fake_logits):
        # -log sigmoid(l) == softplus(-l): stable for large negative logits
        return F.softplus(-fake_logits.float())


@register("hinge")
class HingeLoss(GANLoss):
    def real_terms(self, logits):
        return F.relu(1.0 - logits.float())

    def fake_terms(self, logits):
        return F.relu(1.0 + logits.float())

    def g_terms(self, fake_logits):
        return -fake_logits.float()


@register("lsgan")
class LSGANLoss(GANLoss):
    """Least squares GAN (Mao et al. 2017) with targets a=0 (fake), b=1 (real), c=1 (G)."""

    def real_terms(self, logits):
        return 0.5 * (logits.float() - 1.0).pow(2)

    def fake_terms(self, logits):
        return 0.5 * logits.float().pow(2)

    def fake_terms_to(self, logits, targets):
        return 0.5 * (logits.float() - targets.float()).pow(2)

    def g_terms(self, fake_logits):
        return 0.5 * (fake_logits.float() - 1.0).pow(2)


@register("wgan")
class WGANLoss(GANLoss):
    """Wasserstein critic loss; pair it with ``loss.gp_weight=10`` and ``model.d_batchnorm=false`` (WGAN-GP)."""

    def real_terms(self, logits):
        return -logits.float()

    def fake_terms(self, logits):
        return logits.float()

    def g_terms(self, fake_logits):
        return -fake_logits.float()


def get_loss(name: str, **params: Any) -> GANLoss:
    """A loss by registry name; ``params`` go to its constructor (unknown ones are dropped)."""
    cls = LOSSES.get(name)
    if cls is None:
        raise ConfigError(f"unknown loss '{name}'", f"use loss.name= one of: {', '.join(sorted(LOSSES))}")
    import inspect

    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in params.items() if k in accepted})


def loss_from_config(loss_cfg: Any) -> GANLoss:
    """From a :class:`histosynth.config.LossConfig` (``name``, ``real_label``)."""
    return get_loss(loss_cfg.name, real_label=loss_cfg.real_label)


def gradient_penalty(
    discriminator: torch.nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    y: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP: mean((||grad_x D(x_hat)||_2 - 1)^2) on random interpolates x_hat of real and fake.

    Runs in fp32 with autocast off (double backward under fp16 would need its own loss scaling). The
    result keeps its graph (``create_graph=True``), so adding it to the D loss trains through it.
    """
    real, fake = real.detach().float(), fake.detach().float()
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, generator=generator)
    x_hat = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        out = discriminator(x_hat, y) if y is not None else discriminator(x_hat)
        (grad,) = torch.autograd.grad(out.float().sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1.0).pow(2).mean()


# GANetic lives in its own module (found by the paper's name); importing it registers "ganetic".
from histosynth.gan import ganetic as _ganetic  # noqa: E402,F401
