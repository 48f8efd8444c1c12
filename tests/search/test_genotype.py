"""The genotype encoding: parse, print, round-trip, and clear errors for bad text."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from histosynth.errors import ConfigError
from histosynth.search.config import FIXED_D, load_search_config
from histosynth.gan.nets.ga_gan_genotype import OPS, Genotype
from histosynth.search.aging_evolution import genes, mutate, random_genotype

pytestmark = pytest.mark.unit

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_the_methods_discriminator_parses_edge_by_edge():
    g = Genotype.parse(FIXED_D, "d")
    assert (g.nodes, g.ops, g.attention) == (4, (2, 3, 5, 6, 6, 7), (4,))
    assert [g.op(0, 1), g.op(0, 2), g.op(0, 3), g.op(1, 2), g.op(1, 3), g.op(2, 3)] == ["conv1x1", "conv3x3", "sep3x3", "maxpool3x3", "maxpool3x3", "avgpool3x3"]
    assert str(g) == FIXED_D and g.tape == "235-66-7"


@pytest.mark.parametrize("text", ["{3, 12-6, [1, 2]}", "{4, 235-66-7, [4]}", "{5, 0123-450-12-3, []}", "{3, 00-0, [1, 2, 3, 4]}"])
def test_round_trip(text):
    g = Genotype.parse(text)
    assert str(g) == text and Genotype.parse(str(g)) == g
    assert Genotype.parse(text.replace(" ", "")) == g  # spacing is free


@pytest.mark.parametrize(
    ("text", "role", "match"),
    [
        ("4, 235-66-7, [4]", None, "not a GA-GAN genotype"),
        ("{2, 1, []}", None, "3..5 nodes"),
        ("{6, 12345-1234-123-12-1, []}", None, "3..5 nodes"),
        ("{4, 23-66-7, [4]}", None, "tape groups of xxx-xx-x"),
        ("{4, 2358-66-7, [4]}", None, "tape groups"),
        ("{4, 235-69-7, [4]}", None, "unknown op digits"),
        ("{4, 235-66-7, [2, 1]}", None, "distinct, increasing"),
        ("{4, 235-66-7, [0]}", None, ">= 1"),
        ("{4, 235-66-7, [4]}", "g", "discriminator-only"),
        ("{4, 235-11-1, [4]}", "x", "unknown network role"),
    ],
)
def test_bad_genotypes_say_what_and_how(text, role, match):
    with pytest.raises(ConfigError, match=match) as e:
        Genotype.parse(text, role)
    assert e.value.hint


def test_attention_must_fit_the_network():
    with pytest.raises(ConfigError, match="network has 3 cells"):
        Genotype.parse(FIXED_D).check("d", 3)


def test_random_genotypes_respect_the_role():
    rng = random.Random(0)
    for _ in range(50):
        g = random_genotype(rng, "g", 4)
        assert max(g.ops) < 6 and all(1 <= a <= 4 for a in g.attention)
        assert Genotype.parse(str(g), "g") == g


def _diff(a: Genotype, b: Genotype, cells: int) -> int:
    return sum(x != y for x, y in zip(a.ops, b.ops)) + len(set(a.attention) ^ set(b.attention))


def test_mutation_changes_exactly_one_gene():
    rng = random.Random(1)
    g = Genotype.parse("{4, 235-14-5, [2]}", "g")
    kinds = set()
    for _ in range(200):
        child = mutate(g, rng, "g", 4)
        assert _diff(g, child, 4) == 1 and child.nodes == g.nodes
        Genotype.parse(str(child), "g")
        kinds.add("op" if child.ops != g.ops else "attention")
    assert kinds == {"op", "attention"}


def test_mutation_probability_changes_more_genes():
    g = Genotype.parse("{4, 235-14-5, [2]}", "g")
    assert _diff(g, mutate(g, random.Random(2), "g", 4, prob=1.0), 4) == genes(g, 4)


def test_search_presets_load():
    for path in sorted(CONFIGS.glob("ga-gan-*.yaml")):
        cfg = load_search_config(path)
        Genotype.parse(cfg.fixed_d, "d")
    assert len(OPS) == 8


@pytest.mark.parametrize(("item", "match"), [("population=1", "population"), ("nope=1", "unknown search settings"), ("steps=abc", "not a int"), ("stages=x", "stages"), ("population", "no '='"), ("fixed_d={4, 235-66-7, [4]}", "network has 3 cells"), ("image_size=48", "power of two")])
def test_bad_search_settings(item, match):
    extra = ["image_size=32"] if item.startswith("fixed_d") else []
    with pytest.raises(ConfigError, match=match):
        load_search_config(None, [*extra, item])


def test_cli_dry_run_and_bad_input(cli):
    code, out, _ = cli("search", "run", "--dry-run", "-c", str(CONFIGS / "ga-gan-cpu.yaml"), "-s", "population=6")
    assert code == 0 and "population: 6" in out and "image_size: 32" in out
    code, _, err = cli("search", "run", "-s", "stages=q")
    assert code == 2 and "error:" in err and "fix:" in err
