"""Every evaluation option in one object, ``EvalConfig``: the one place for their defaults.

The CLI (``histosynth evaluate``, ``histosynth pipeline run``), the pipeline stage, the KFP component and the
pipelines all hand one ``EvalConfig`` (or its ``to_dict()``, a JSON object, where KFP wants plain values) to
``histosynth.evaluation.suite.evaluate_generator``, so an option is added, renamed or re-defaulted here once.
What an evaluation reads and writes (bundle, real splits, JSONL, MLflow run, artifacts folder) is not part of it.

This module imports nothing heavy: the CLI builds its flags from it before torch is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from histosynth.errors import ConfigError, HistosynthError

DEFAULT_EXTRACTOR = "inception-fid"  # the standard FID/KID network; metric keys carry no extractor prefix for it
DEFAULT_METRICS = ("fid", "kid", "precision_recall", "density_coverage")
TSTR_MODES = ("off", "on", "auto")


@dataclass
class EvalConfig:
    """How to evaluate a generator. ``n_fake`` 0: as many fakes as real patches used; ``n_real`` 0: the whole split
    (else a seeded subset); ``weights`` "": the extractor's default weights; ``cmmd_extractor`` "": ``extractor``;
    ``metric_options``: overrides of ``histosynth.evaluation.metrics.DEFAULTS``; ``tstr`` off/on/auto with
    ``tstr_options`` (``TstrConfig`` fields); ``tsne`` / ``knn`` (K, 0: off; ``knn_rows`` rows) the diagnostics
    plots; ``report`` report.md/.html; ``per_class_fid``: for a class-conditional generator, also the FID of each
    class against the same class's real samples (``fid/<class>`` and their mean ``fid_class_mean``, as
    class-conditional GAN papers report it; no effect on unconditional generators). "Unset" is 0 or "", not None: KFP parameters cannot hold null, and None
    (a CLI flag left out) is read as unset."""

    split: str = "test"
    metrics: str = ",".join(DEFAULT_METRICS)
    extractor: str = DEFAULT_EXTRACTOR
    weights: str = ""
    n_fake: int = 0
    n_real: int = 0
    seed: int = 0
    batch_size: int = 64
    device: str = "auto"
    metric_options: dict[str, Any] = field(default_factory=dict)
    refresh_cache: bool = False
    cmmd_extractor: str = ""
    tstr: str = "off"
    tstr_options: dict[str, Any] = field(default_factory=dict)
    tsne: bool = False
    knn: int = 0
    knn_rows: int = 8
    report: bool = False
    per_class_fid: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.metrics, str):  # a list of names, as the library's callers may pass
            self.metrics = ",".join(self.metrics)
        self.weights = str(self.weights or "")  # a Path from the CLI
        self.cmmd_extractor = self.cmmd_extractor or ""
        self.n_fake, self.n_real = self.n_fake or 0, self.n_real or 0
        for name in ("metric_options", "tstr_options"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(f"evaluation option {name}={value!r} is not a mapping", 'write it as a JSON object of option: value, e.g. {"epochs": 2}')
            setattr(self, name, dict(value or {}))  # a copy: configs made from one base never share it
        if self.tstr not in TSTR_MODES:
            raise HistosynthError(f"tstr='{self.tstr}'", "use off, on (refuses unconditional generators) or auto (skips them, saying why)")
        if self.batch_size < 1:
            raise HistosynthError(f"batch_size={self.batch_size} must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        """A JSON object of every option (what a KFP ``dict`` parameter carries)."""
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, base: EvalConfig | None = None) -> EvalConfig:
        """``base`` (default: the defaults) with the options in ``values``; an unknown key is an error, not ignored.

        KFP carries ``dict`` parameters as protobuf Structs, whose numbers are all doubles: whole numbers are made
        ints again (``n_fake`` 64.0 -> 64, TSTR ``epochs`` 2.0 -> 2)."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise ConfigError(f"unknown evaluation option(s) {unknown}", f"use some of: {', '.join(FIELDS)}")
        return replace(base or cls(), **{k: _whole_to_int(v) for k, v in values.items()})

    @classmethod
    def from_flags(cls, params: Mapping[str, Any], **values: Any) -> EvalConfig:
        """From a CLI command's parameters (``click.Context.params``): those named like a field, then ``values``."""
        return cls.from_dict({**{k: v for k, v in params.items() if k in FIELDS}, **values})


def _whole_to_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _whole_to_int(v) for k, v in value.items()}
    return value


FIELDS = tuple(f.name for f in fields(EvalConfig))
DEFAULTS = EvalConfig()
# What a pipeline's evaluate stage runs unless told otherwise: TSTR where the generator allows it, the t-SNE plot,
# the 5-nearest-real-neighbour grid and the report (its HTML is a step output).
STAGE_DEFAULTS = EvalConfig(tstr="auto", tsne=True, knn=5, report=True)
