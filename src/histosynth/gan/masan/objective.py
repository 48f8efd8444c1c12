"""MASAN's discriminator objective (the ``d_objective`` hook of :class:`histosynth.gan.train.step.GANStep`).

    L_D = [E_real l_real(f_fun) + E_fake l_fake(f_fun)]            the GAN loss on h (hinge in the presets)
        + (E_fake[f_dir] - E_real[f_dir])                           the Wasserstein term on the SAN direction
        + recon_weight * (|dec8(x) - down(x)|_1 + |dec16(x)_q - x_q|_1)   reconstruction of real images

(``f_fun``/``f_dir``: :mod:`histosynth.gan.masan.san`; decoders and targets:
:mod:`histosynth.gan.masan.discriminator`). ``x`` is the real batch as D saw it (after DiffAugment), so the
decoders rebuild D's actual input; the quadrant ``q`` is drawn once per batch from the global RNG (seeded and
checkpointed with the run). G is trained by the step on the plain output ``<w, h>`` as usual. A discriminator
built without SAN (``model.san=false``, an ablation) gets the GAN loss on its plain output and no direction term.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from histosynth.gan.losses import GANLoss
from histosynth.gan.masan.discriminator import MASANDiscriminator, recon_targets
from histosynth.gan.masan.san import wasserstein_direction_loss


@dataclass
class DTerms:
    """One D update's pieces: ``loss_real + loss_fake`` is the GAN loss (logged as ``loss_d_real/fake``),
    ``extra`` the rest of what D minimises; ``*_logits`` are detached plain outputs for the metrics."""

    real_logits: torch.Tensor
    fake_logits: torch.Tensor
    loss_real: torch.Tensor
    loss_fake: torch.Tensor
    extra: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


def recon_loss(D: MASANDiscriminator, f8: torch.Tensor, f16: torch.Tensor, real: torch.Tensor, part: int) -> torch.Tensor:
    """L1 of both decoders against their targets (fp32), summed."""
    rec_full, rec_part = D.reconstruct(f8, f16, part)
    t_full, t_part = recon_targets(real, part)
    return F.l1_loss(rec_full.float(), t_full.float()) + F.l1_loss(rec_part.float(), t_part.float())


class MASANObjective:
    def __init__(self, loss: GANLoss, recon_weight: float = 1.0):
        self.loss = loss
        self.recon_weight = float(recon_weight)

    def __call__(self, D: MASANDiscriminator, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None) -> DTerms:
        h_real, f8, f16 = D.features(real)
        h_fake = D.features(fake)[0]
        m: dict[str, torch.Tensor] = {}
        extra = torch.zeros((), device=real.device)
        if D.sliced:
            fun_real, dir_real = D.san.split(h_real, y)
            fun_fake, dir_fake = D.san.split(h_fake, y)
            direction = wasserstein_direction_loss(dir_real, dir_fake)
            m["san/loss_dir"] = direction.detach()
            extra = extra + direction
        else:  # the ablation: a plain head, the GAN loss reaching both its weights and h
            fun_real, fun_fake = D.san(h_real, y), D.san(h_fake, y)
        if self.recon_weight > 0:
            rec = recon_loss(D, f8, f16, real, int(torch.randint(4, ())))
            extra = extra + self.recon_weight * rec
            m["masan/recon_l1"] = rec.detach()
        return DTerms(fun_real.detach(), fun_fake.detach(), self.loss.d_real(fun_real), self.loss.d_fake(fun_fake), extra, m)
