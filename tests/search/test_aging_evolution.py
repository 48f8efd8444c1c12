"""The aging-evolution rule, without Optuna: random until the population exists, then the best of a random sample
is mutated; the population is the most recent finishers, so the oldest leaves however fit it is."""

from __future__ import annotations

import random

import pytest

from histosynth.gan.nets.ga_gan_genotype import Genotype
from histosynth.search.aging_evolution import Evolution, Individual, random_genotype

pytestmark = pytest.mark.unit


def _history(n: int, fitness=None) -> list[Individual]:
    rng = random.Random(5)
    return [Individual(random_genotype(rng, "g", 4), (fitness or (lambda i: float(i)))(i), i) for i in range(n)]


EVO = Evolution("g", 4, population=4, sample=2, mutation_prob=0.0, seed=0)


def test_random_until_the_population_exists():
    g, parent = EVO.propose(_history(2), started=3, number=3)
    assert parent is None and isinstance(g, Genotype)


def test_the_oldest_leaves_even_when_best():
    history = _history(6)  # individual 0 has the best fitness but is the oldest
    assert [i.number for i in EVO.alive(history)] == [2, 3, 4, 5]
    for n in range(20):
        _, parent = EVO.propose(history, started=6, number=n)
        assert parent in (2, 3, 4, 5)


def test_tournament_picks_the_best_of_its_sample():
    alive = _history(4, fitness=lambda i: [3.0, 1.0, 4.0, 2.0][i])
    for seed in range(20):
        rng = random.Random(seed)
        contenders = random.Random(seed).sample(alive, 2)
        assert EVO.tournament(alive, rng) == min(contenders, key=lambda i: i.fitness)
    full = Evolution("g", 4, population=4, sample=4, mutation_prob=0.0)
    assert full.tournament(alive, random.Random(0)).number == 1


def test_a_child_is_its_parent_with_one_change_and_proposals_are_reproducible():
    history = _history(8)
    child, parent = EVO.propose(history, started=8, number=9)
    p = next(i for i in history if i.number == parent)
    diff = sum(a != b for a, b in zip(child.ops, p.genotype.ops)) + len(set(child.attention) ^ set(p.genotype.attention))
    assert diff == 1 and child.nodes == p.genotype.nodes
    assert EVO.propose(history, started=8, number=9) == (child, parent)


def test_a_trial_created_after_the_budget_was_taken_is_surplus():
    """Two workers can both see the last free slot; the later-numbered trial must not run (the stage's budget of
    population + cycles finished trials is exact), while failed or pruned trials leave their slot free."""
    import optuna
    from optuna.trial import TrialState, create_trial

    from histosynth.search.config import SearchConfig
    from histosynth.search.worker import Objective

    cfg = SearchConfig(population=2, sample=1, cycles=1)  # a budget of 3 trials
    objective = Objective(cfg, "g", data=None, experiment_id="")
    study = optuna.create_study()
    for state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING, TrialState.PRUNED):
        study.add_trial(create_trial(state=state, value=1.0 if state == TrialState.COMPLETE else None))
    assert not objective._surplus(study.ask())  # 2 live before it: the third slot is its own
    assert objective._surplus(study.ask())  # 3 live before it: surplus
