"""The search's own settings: one flat dataclass read from a YAML preset plus ``key=value`` overrides.

The defaults are the method's (population 100, sample 25, mutation probability 0.05, 25 cycles, 64 px, G width
1024, D width 64, batch 128, TTUR 1e-4 / 4e-4); presets set only what differs (small CPU runs, the cluster)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from histosynth import defaults
from histosynth.errors import ConfigError

FIXED_D = "{4, 235-66-7, [4]}"  # the discriminator stage 1 trains every generator against


@dataclass
class SearchConfig:
    name: str = "ga-gan"  # study names are <name>-g and <name>-d
    storage: str = ""  # Optuna RDB URL; empty: sqlite in out_dir (a postgresql:// URL on the cluster)
    out_dir: str = ""  # trial checkpoints and the winner; empty: <state>/search/<name>
    stages: str = "g,d"  # g: search G against fixed_d; d: search D against the best G
    fixed_d: str = FIXED_D
    # evolution (cycles = children bred after the initial random population, per stage)
    population: int = 100
    sample: int = 25
    mutation_prob: float = 0.05
    cycles: int = 25
    seed: int = 0
    # parallel evaluation and fault tolerance
    workers: int = 2
    heartbeat_s: int = 60  # a RUNNING trial whose worker stopped beating for grace_s is failed and re-queued
    grace_s: int = 180
    max_retry: int = 3
    # networks and data
    image_size: int = 64
    latent_dim: int = 128
    g_width: int = 1024
    d_width: int = 64
    data_root: str = "data/splits"
    split: str = "train"
    # candidate training (the method: 30 epochs per candidate; here counted in steps)
    steps: int = 2000
    retrain_steps: int = 20000
    batch_size: int = 128
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    beta1: float = 0.5
    beta2: float = 0.999
    augment: str = "color,translation"
    device: str = "auto"
    # fitness = FID of n_fake samples against the cached statistics of the fid_split
    fid_split: str = "val"
    extractor: str = "inception-fid"  # a registered name, or "module:function" building one
    n_fake: int = 1000
    n_real: int = 0  # 0: the whole split
    fid_batch: int = 64
    # tracking
    tracking_uri: str = ""
    experiment: str = "ga-gan-search"

    def root(self) -> Path:
        return Path(self.out_dir).expanduser().absolute() if self.out_dir else defaults.paths().home / "search" / self.name

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{self.root() / 'study.db'}"

    def stage_list(self) -> list[str]:
        stages = [s.strip() for s in self.stages.split(",") if s.strip()]
        if not stages or any(s not in ("g", "d") for s in stages) or len(set(stages)) != len(stages):
            raise ConfigError(f"stages='{self.stages}'", "use 'g', 'd' or 'g,d' (the D search needs a finished G search)")
        return stages

    def validate(self) -> SearchConfig:
        self.stage_list()
        if self.population < 2 or not 1 <= self.sample <= self.population:
            raise ConfigError(f"population={self.population}, sample={self.sample}", "use population >= 2 and 1 <= sample <= population")
        if not 0.0 <= self.mutation_prob <= 1.0:
            raise ConfigError(f"mutation_prob={self.mutation_prob} is not a probability", "use a value in [0, 1]")
        for key in ("cycles", "workers", "steps", "batch_size", "n_fake", "heartbeat_s", "grace_s"):
            if getattr(self, key) < (0 if key == "cycles" else 1):
                raise ConfigError(f"{key}={getattr(self, key)} is too small", f"set {key} to a positive number")
        from histosynth.gan.nets.ga_gan import stages_for
        from histosynth.gan.nets.ga_gan_genotype import Genotype

        Genotype.parse(self.fixed_d, "d").check("d", stages_for(self.image_size))
        if self.n_fake < 2:
            raise ConfigError(f"n_fake={self.n_fake}: FID needs at least 2 samples", "use hundreds for stable numbers")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_search_config(path: str | Path | None = None, overrides: list[str] | None = None) -> SearchConfig:
    """A preset (YAML mapping of the fields above) with ``key=value`` overrides on top; unknown keys are errors."""
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"search preset '{p}' not found", "pass a YAML file such as configs/ga-gan-search.yaml")
        loaded = yaml.safe_load(p.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"search preset '{p}' is not a mapping", "write one 'key: value' per line")
        values.update(loaded)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override '{item}' has no '='", "write key=value, e.g. -s population=8")
        key = key.strip()
        values[key] = raw.strip() if isinstance(getattr(SearchConfig, key, None), str) else yaml.safe_load(raw)
    known = {f.name: f for f in fields(SearchConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown search settings {unknown}", f"known: {', '.join(known)}")
    typed = {}
    for key, value in values.items():
        kind = type(getattr(SearchConfig, key))
        if kind is str and isinstance(value, (dict, list)):
            raise ConfigError(f"{key}={value!r} is not a string", f"quote it: {key}: '...'")
        try:
            typed[key] = kind(value) if not (kind is int and isinstance(value, float) and not value.is_integer()) else None
        except (TypeError, ValueError):
            typed[key] = None
        if typed[key] is None or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{key}={value!r} is not a {kind.__name__}", f"set {key} to a {kind.__name__}")
    return SearchConfig(**typed).validate()
