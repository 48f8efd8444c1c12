"""The SAN last layer (Slicing Adversarial Network; Takida et al., ICLR 2024, "SAN: Inducing Metrizability of
GAN with Discriminative Normalized Linear Layer") and its discriminator objective.

The discriminator is split into a feature map ``h(x)`` (R^D) and a unit direction ``w`` (one per class when
conditional): ``f(x, y) = <w_y, h(x)>``, ``w_y = v_y / ||v_y||``. With ``sg`` the stop-gradient:

- plain output (G's loss, sampling, metrics):   ``f(x, y) = <w_y, h(x)>``
- function output (trains h only):              ``f_fun(x, y) = <sg(w_y), h(x)>``
- direction output (trains w only):             ``f_dir(x, y) = <w_y, sg(h(x))>``

D maximises ``V_SAN = V_h(sg(w), h) + lambda * V_W(w, sg(h))`` with the chosen GAN objective ``V_h`` (hinge
here: ``-E_real[relu(1 - f_fun)] - E_fake[relu(1 + f_fun)]``) and the Wasserstein objective
``V_W = E_real[f_dir] - E_fake[f_dir]``, so D *minimises*

    L_D = E_real[relu(1 - f_fun)] + E_fake[relu(1 + f_fun)] + lambda * (E_fake[f_dir] - E_real[f_dir]).

The direction thus points along which real and fake features are farthest apart on average (the
max-sliced-Wasserstein slice), while h is free to be any GAN discriminator's features; G minimises its usual
loss on the plain output (hinge: ``-E_fake[f]``). The metrizability result needs ``w`` on the unit sphere,
hence the normalisation and no bias. ``lambda`` is 1, as in the paper's experiments.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SANLinear(nn.Module):
    """``<w_y, h>`` with unit ``w_y`` (``num_classes`` directions, or one when 0); ``split`` gives the two
    detached forms D trains on. ``normalize`` False keeps ``v_y`` as it is: an ordinary linear (projection) head,
    for the ablation without SAN."""

    def __init__(self, dim: int, num_classes: int = 0, normalize: bool = True):
        super().__init__()
        self.num_classes, self.normalize = num_classes, normalize
        self.weight = nn.Parameter(torch.randn(max(1, num_classes), dim))

    def direction(self, y: torch.Tensor | None, batch: int) -> torch.Tensor:
        """(B, D) unit directions for class ids ``y`` (the single direction when unconditional)."""
        if self.num_classes:
            if y is None:
                raise ValueError("this discriminator is class-conditional: pass class ids y")
            v = self.weight[y]
        else:
            v = self.weight.expand(batch, -1)
        return F.normalize(v, dim=1) if self.normalize else v

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return (h * self.direction(y, h.shape[0])).sum(1)

    def split(self, h: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (f_fun, f_dir): ``<sg(w), h>`` (gradients reach h only) and ``<w, sg(h)>`` (w only)."""
        w = self.direction(y, h.shape[0])
        return (h * w.detach()).sum(1), (h.detach() * w).sum(1)


def wasserstein_direction_loss(dir_real: torch.Tensor, dir_fake: torch.Tensor) -> torch.Tensor:
    """``E_fake[f_dir] - E_real[f_dir]`` (fp32): what the direction minimises."""
    return dir_fake.float().mean() - dir_real.float().mean()
