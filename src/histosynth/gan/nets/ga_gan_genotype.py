"""GA-GAN genotypes: one cell (shared by every stage of a network) written as ``{N, tape, [ATTN]}``.

A cell has ``N`` nodes (3..5). Node 0 is the cell input; node ``j`` is the sum of one op applied to every earlier
node ``i < j``; the cell output is the last node. The tape holds one op digit per edge ``i -> j``, grouped by
source node and separated by ``-``: group ``i`` lists the ops from node ``i`` to nodes ``i+1 .. N-1`` in order. So
``{4, 235-66-7, [4]}`` reads 0->1 ``2``, 0->2 ``3``, 0->3 ``5``, 1->2 ``6``, 1->3 ``6``, 2->3 ``7``.

Op digits (the generator may use 0..5, the discriminator 0..7):

=====  ========================================
digit  op
=====  ========================================
0      zero (the edge is absent)
1      skip (identity)
2      conv 1x1 -> ELU -> BN
3      conv 3x3 -> ELU -> BN
4      conv 5x5 -> ELU -> BN
5      separable conv 3x3 -> ELU -> BN
6      max pool 3x3, stride 1 (discriminator)
7      avg pool 3x3, stride 1 (discriminator)
=====  ========================================

``ATTN`` lists the cells (1-based, in network order) followed by a self-attention block; ``[]`` for none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from histosynth.errors import ConfigError

OPS = ("zero", "skip", "conv1x1", "conv3x3", "conv5x5", "sep3x3", "maxpool3x3", "avgpool3x3")
ROLE_OPS = {"g": 6, "d": 8}  # how many of OPS (from the start) each network may use
MIN_NODES, MAX_NODES = 3, 5
FORMAT_HINT = "write a genotype as '{N, tape, [ATTN]}', e.g. '{4, 235-66-7, [4]}': N nodes 3..5, N-1 '-'-separated tape groups of N-1, N-2, .., 1 op digits, attention cell numbers from 1"
_PATTERN = re.compile(r"^\{\s*(\d+)\s*,\s*([0-9-]+)\s*,\s*\[([0-9,\s]*)\]\s*\}$")


def edges(nodes: int) -> list[tuple[int, int]]:
    """The edges ``(i, j)`` in tape order."""
    return [(i, j) for i in range(nodes - 1) for j in range(i + 1, nodes)]


@dataclass(frozen=True)
class Genotype:
    """``ops`` holds one op index per edge in tape order (:func:`edges`); ``attention`` the 1-based cell numbers."""

    nodes: int
    ops: tuple[int, ...]
    attention: tuple[int, ...] = ()

    def __post_init__(self):
        if not MIN_NODES <= self.nodes <= MAX_NODES:
            raise ConfigError(f"a GA-GAN cell has {MIN_NODES}..{MAX_NODES} nodes, got {self.nodes}", FORMAT_HINT)
        want = len(edges(self.nodes))
        if len(self.ops) != want:
            raise ConfigError(f"a {self.nodes}-node cell has {want} edges, the tape has {len(self.ops)} ops", FORMAT_HINT)
        bad = [o for o in self.ops if not 0 <= o < len(OPS)]
        if bad:
            raise ConfigError(f"unknown op digits {bad} in the tape", f"ops are 0..{len(OPS) - 1}: " + ", ".join(f"{i} {n}" for i, n in enumerate(OPS)))
        if any(a < 1 for a in self.attention) or len(set(self.attention)) != len(self.attention) or list(self.attention) != sorted(self.attention):
            raise ConfigError(f"attention cells {list(self.attention)} must be distinct, increasing and >= 1", FORMAT_HINT)

    @classmethod
    def parse(cls, text: str, role: str | None = None) -> Genotype:
        """``'{4, 235-66-7, [4]}'`` -> Genotype; ``role`` ('g' or 'd') also checks the ops are allowed there."""
        m = _PATTERN.match(str(text).strip())
        if not m:
            raise ConfigError(f"'{text}' is not a GA-GAN genotype", FORMAT_HINT)
        nodes, tape, attn = int(m.group(1)), m.group(2).split("-"), m.group(3)
        if MIN_NODES <= nodes <= MAX_NODES and [len(g) for g in tape] != list(range(nodes - 1, 0, -1)):
            raise ConfigError(f"'{text}': a {nodes}-node cell needs tape groups of {'-'.join('x' * k for k in range(nodes - 1, 0, -1))} digits", FORMAT_HINT)
        try:
            attention = tuple(int(a) for a in attn.split(",") if a.strip())
        except ValueError:
            raise ConfigError(f"'{text}': attention must be a list of cell numbers", FORMAT_HINT) from None
        g = cls(nodes, tuple(int(c) for c in "".join(tape)), attention)
        if role is not None:
            g.check(role)
        return g

    def check(self, role: str, cells: int | None = None) -> Genotype:
        """Raise unless every op fits ``role`` ('g' generator, 'd' discriminator) and attention fits ``cells``."""
        if role not in ROLE_OPS:
            raise ConfigError(f"unknown network role '{role}'", "use 'g' (generator) or 'd' (discriminator)")
        limit = ROLE_OPS[role]
        bad = sorted({OPS[o] for o in self.ops if o >= limit})
        if bad:
            raise ConfigError(f"{self}: ops {bad} are discriminator-only", f"a generator cell uses op digits 0..{limit - 1}")
        if cells is not None and any(a > cells for a in self.attention):
            raise ConfigError(f"{self}: attention after cell {max(self.attention)}, but the network has {cells} cells", f"use cell numbers 1..{cells}")
        return self

    def op(self, i: int, j: int) -> str:
        return OPS[self.ops[edges(self.nodes).index((i, j))]]

    @property
    def tape(self) -> str:
        groups, k = [], 0
        for size in range(self.nodes - 1, 0, -1):
            groups.append("".join(map(str, self.ops[k : k + size])))
            k += size
        return "-".join(groups)

    def __str__(self) -> str:
        return f"{{{self.nodes}, {self.tape}, [{', '.join(map(str, self.attention))}]}}"

