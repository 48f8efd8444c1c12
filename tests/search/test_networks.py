"""Cells, attention and the macro networks keep their shapes; weight inheritance copies what fits."""

from __future__ import annotations

import pytest
import torch

from histosynth.gan.nets.ga_gan import Discriminator, Generator, inherit
from histosynth.gan.nets.ga_gan_cells import Cell, SelfAttention, make_op
from histosynth.gan.nets.ga_gan_genotype import OPS, Genotype

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("op", OPS)
def test_every_op_keeps_the_shape(op):
    x = torch.randn(2, 8, 6, 6)
    module = make_op(op, 8)
    assert module is None if op == "zero" else module(x).shape == x.shape


@pytest.mark.parametrize("text", ["{3, 12-5, []}", "{4, 235-66-7, []}", "{5, 0123-456-71-0, []}", "{3, 00-0, []}"])
def test_cells_keep_the_shape(text):
    x = torch.randn(2, 8, 8, 8)
    assert Cell(Genotype.parse(text), 8)(x).shape == x.shape


def test_a_cell_sums_ops_of_all_earlier_nodes():
    cell = Cell(Genotype.parse("{3, 11-1, []}"), 4)  # node1 = x, node2 = x + node1
    x = torch.randn(1, 4, 3, 3)
    assert torch.allclose(cell(x), 2 * x)
    assert torch.equal(Cell(Genotype.parse("{3, 10-0, []}"), 4)(x), torch.zeros_like(x))  # no edge reaches the output


def test_attention_starts_as_identity_and_keeps_the_shape():
    att = SelfAttention(16)
    x = torch.randn(2, 16, 4, 4)
    assert torch.equal(att(x), x)
    with torch.no_grad():
        att.gamma.fill_(1.0)
    y = att(x)
    assert y.shape == x.shape and not torch.equal(y, x)


def test_macro_networks_at_32px():
    g = Generator(Genotype.parse("{4, 235-14-5, [1, 3]}", "g"), image_size=32, latent_dim=16, width=32, num_classes=4)
    d = Discriminator(Genotype.parse("{4, 235-66-7, [3]}", "d"), image_size=32, width=8, num_classes=4)
    z, y = torch.randn(3, 16), torch.tensor([0, 1, 3])
    x = g(z, y)
    assert x.shape == (3, 3, 32, 32) and x.abs().max() <= 1
    assert d(x, y).shape == (3,)
    assert len(g.cells) == len(d.cells) == 3 and sorted(g.attention) == ["1", "3"]
    assert g.cells[0].edges["0_1:conv1x1"][0].weight_orig.shape == (32, 32, 1, 1)  # spectral norm on the convs


def test_inheritance_copies_exactly_the_matching_tensors():
    torch.manual_seed(0)
    parent = Generator(Genotype.parse("{4, 235-14-5, []}", "g"), image_size=32, latent_dim=16, width=32)
    child = Generator(Genotype.parse("{4, 234-14-5, []}", "g"), image_size=32, latent_dim=16, width=32)
    state = parent.state_dict()
    copied = inherit(child, state)
    after = child.state_dict()
    assert copied and not any(".0_3:" in k for k in copied)  # the mutated edge 0->3 keeps its fresh init
    assert all(torch.equal(after[k], state[k]) for k in copied)
    assert set(copied) == {k for k in after if k in state and state[k].shape == after[k].shape}
    wider = Generator(Genotype.parse("{4, 235-14-5, []}", "g"), image_size=32, latent_dim=16, width=64)
    # other widths: no cell weight fits (only shape-free buffers such as BatchNorm's step counter may)
    assert not [k for k in inherit(wider, state) if k.startswith("cells.") and k.endswith(("weight_orig", "weight", "bias"))]
