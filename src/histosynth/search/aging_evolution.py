"""Aging (regularized) evolution as an Optuna sampler, so many workers can breed from one shared study.

The rule (Real et al. 2019): the population is the ``population`` most recently *finished* candidates, so every
individual dies of age however good it is (the oldest leaves when a child arrives); each new candidate is a
mutation of the best of ``sample`` individuals drawn at random from it. Until ``population`` candidates exist the
proposals are random. Fitness is FID, so lower wins.

In Optuna terms a candidate is a trial: the sampler writes its genotype (and its parent's trial number, for weight
inheritance) as trial user attributes before the objective runs, and the objective reads them back. A trial the
heartbeat declares dead is re-queued with the same attributes, and the sampler keeps them, so a retry evaluates the
same genotype. Every random draw is seeded from (seed, stage, trial number): a re-run proposes the same children
from the same history.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

import optuna
from optuna.trial import TrialState

from histosynth.gan.nets.ga_gan_genotype import MAX_NODES, MIN_NODES, ROLE_OPS, Genotype, edges

GENOTYPE, PARENT = "genotype", "parent"  # the trial user attributes the sampler writes


def random_genotype(rng: random.Random, role: str, cells: int, nodes: int | None = None) -> Genotype:
    """A uniform draw: node count, every edge op, and each cell's attention flag (probability 1/2)."""
    n = nodes or rng.randint(MIN_NODES, MAX_NODES)
    ops = tuple(rng.randrange(ROLE_OPS[role]) for _ in edges(n))
    return Genotype(n, ops, tuple(c for c in range(1, cells + 1) if rng.random() < 0.5))


def genes(g: Genotype, cells: int) -> int:
    """How many independent things a mutation can change: every edge op and every cell's attention flag."""
    return len(g.ops) + cells


def mutate(g: Genotype, rng: random.Random, role: str, cells: int, prob: float = 0.0) -> Genotype:
    """A child of ``g``: each gene (edge op, attention flag) changes with probability ``prob``, and one chosen
    uniformly always changes, so a child never repeats its parent (``prob=0``: exactly one change)."""
    n_genes = genes(g, cells)
    forced = rng.randrange(n_genes)
    ops, attn = list(g.ops), set(g.attention)
    for k in range(n_genes):
        if k != forced and rng.random() >= prob:
            continue
        if k < len(ops):
            ops[k] = rng.choice([o for o in range(ROLE_OPS[role]) if o != ops[k]])
        else:
            attn ^= {k - len(ops) + 1}
    return replace(g, ops=tuple(ops), attention=tuple(sorted(attn)))


@dataclass(frozen=True)
class Individual:
    genotype: Genotype
    fitness: float  # FID, lower is better
    number: int  # the Optuna trial number (names its checkpoint)


@dataclass(frozen=True)
class Evolution:
    """The search parameters for one network ('g' or 'd') of ``cells`` cells."""

    role: str
    cells: int
    population: int
    sample: int
    mutation_prob: float
    seed: int = 0

    def rng(self, number: int) -> random.Random:
        return random.Random(f"{self.seed}-{self.role}-{number}")

    def alive(self, history: Sequence[Individual]) -> list[Individual]:
        """The population: the last ``population`` finished, in the order they finished (oldest first)."""
        return list(history[-self.population :])

    def tournament(self, alive: Sequence[Individual], rng: random.Random) -> Individual:
        """The fittest of ``sample`` individuals drawn without replacement."""
        contenders = rng.sample(list(alive), min(self.sample, len(alive)))
        return min(contenders, key=lambda ind: (ind.fitness, ind.number))

    def propose(self, history: Sequence[Individual], started: int, number: int) -> tuple[Genotype, int | None]:
        """The genotype of trial ``number`` and its parent's trial number (None for a random one).

        ``history``: the finished candidates in finishing order; ``started``: how many candidates exist besides
        this one (finished or running), which decides whether the initial random population is complete."""
        rng = self.rng(number)
        if started < self.population or not history:
            return random_genotype(rng, self.role, self.cells), None
        parent = self.tournament(self.alive(history), rng)
        return mutate(parent.genotype, rng, self.role, self.cells, self.mutation_prob), parent.number


class AgingEvolutionSampler(optuna.samplers.BaseSampler):
    """Writes each new trial's genotype and parent from :class:`Evolution` over the study's finished trials."""

    def __init__(self, evolution: Evolution):
        self.evolution = evolution

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        raise NotImplementedError("the GA-GAN objective suggests no parameters: its genotype is a user attribute")

    def before_trial(self, study, trial) -> None:
        if GENOTYPE in trial.user_attrs:  # a re-queued trial keeps what it was
            return
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        done = sorted((t for t in trials if t.state == TrialState.COMPLETE and GENOTYPE in t.user_attrs), key=lambda t: (t.datetime_complete, t.number))
        history = [Individual(Genotype.parse(t.user_attrs[GENOTYPE]), float(t.value), t.number) for t in done]
        started = sum(1 for t in trials if t.number != trial.number)
        genotype, parent = self.evolution.propose(history, started, trial.number)
        study._storage.set_trial_user_attr(trial._trial_id, GENOTYPE, str(genotype))
        study._storage.set_trial_user_attr(trial._trial_id, PARENT, parent)
