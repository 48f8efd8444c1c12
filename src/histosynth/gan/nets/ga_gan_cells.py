"""The GA-GAN search space as modules: one op per edge, a cell of nodes, and the self-attention block.

Every conv is spectrally normalised (the method trains both networks with spectral norm everywhere). Module names
depend only on the edge and the op, so two genotypes that share an op on an edge share parameter names, which is
what weight inheritance (:func:`histosynth.gan.nets.ga_gan.inherit`) matches on.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import spectral_norm

from histosynth.gan.nets.ga_gan_genotype import Genotype, edges


def sn_conv(c_in: int, c_out: int, k: int, groups: int = 1, bias: bool = True) -> nn.Module:
    return spectral_norm(nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups, bias=bias))


class ConvELUBN(nn.Sequential):
    def __init__(self, c: int, k: int):
        super().__init__(sn_conv(c, c, k), nn.ELU(), nn.BatchNorm2d(c))


class SepConv(nn.Sequential):
    """Depthwise 3x3 then pointwise 1x1: a 3x3 receptive field at a fraction of the parameters."""

    def __init__(self, c: int):
        super().__init__(sn_conv(c, c, 3, groups=c, bias=False), sn_conv(c, c, 1), nn.ELU(), nn.BatchNorm2d(c))


def make_op(name: str, c: int) -> nn.Module | None:
    """The module for op ``name`` on ``c`` channels; None for ``zero`` (the edge adds nothing)."""
    if name == "zero":
        return None
    if name == "skip":
        return nn.Identity()
    if name.startswith("conv"):
        return ConvELUBN(c, int(name[4]))
    if name == "sep3x3":
        return SepConv(c)
    if name == "maxpool3x3":
        return nn.MaxPool2d(3, stride=1, padding=1)
    if name == "avgpool3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown op '{name}'")


class Cell(nn.Module):
    """Node 0 = input; node j = sum over i < j of op(i, j)(node i); output = the last node (zeros when every
    edge into it is ``zero``). Shapes are kept: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, genotype: Genotype, channels: int):
        super().__init__()
        self.nodes = genotype.nodes
        self.edges = nn.ModuleDict()
        self._inputs: dict[int, list[tuple[int, str]]] = {j: [] for j in range(1, self.nodes)}
        for i, j in edges(genotype.nodes):
            op = make_op(genotype.op(i, j), channels)
            if op is not None:
                key = f"{i}_{j}:{genotype.op(i, j)}"
                self.edges[key] = op
                self._inputs[j].append((i, key))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for j in range(1, self.nodes):
            terms = [self.edges[k](states[i]) for i, k in self._inputs[j]]
            states.append(torch.stack(terms).sum(0) if terms else torch.zeros_like(x))
        return states[-1]


class SelfAttention(nn.Module):
    """SAGAN self-attention added through a residual ``x + gamma * attn(x)`` with gamma starting at 0, so a
    freshly inserted block leaves the network's function unchanged."""

    def __init__(self, c: int):
        super().__init__()
        inner = max(c // 8, 1)
        self.query, self.key = sn_conv(c, inner, 1, bias=False), sn_conv(c, inner, 1, bias=False)
        self.value = sn_conv(c, c, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, HW, c')
        k = self.key(x).flatten(2)  # (B, c', HW)
        attn = torch.softmax(q @ k, dim=-1)  # (B, HW, HW)
        out = self.value(x).flatten(2) @ attn.transpose(1, 2)  # (B, C, HW)
        return x + self.gamma * out.view(b, c, h, w)
