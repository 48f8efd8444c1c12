"""The machinery every typed config shares (GAN: :mod:`histosynth.config.gan`, MFT-SNN: :mod:`histosynth.config.snn`).

A config is a tree of dataclasses whose field defaults are the only defaults. A YAML preset lists only what
differs from them, or from the preset it names in ``extends:``; ``section.key=value`` overrides come last.
Unknown keys are errors that name the valid ones, so a typo never silently trains the wrong model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar, get_type_hints

import yaml

from histosynth import defaults
from histosynth.errors import ConfigError

EXTENDS = "extends"  # the preset key naming the preset this one builds on


class Sections:
    """Serialisation of a root config dataclass."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def flat(self) -> dict[str, Any]:
        """``section.key -> value``, the form MLflow params take."""
        return flatten_sections(self.to_dict())

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def flatten_sections(config: dict[str, Any]) -> dict[str, Any]:
    """``{"train": {"epochs": 3}, "method": "x"}`` -> ``{"train.epochs": 3, "method": "x"}``."""
    out: dict[str, Any] = {}
    for section, values in config.items():
        if isinstance(values, dict):
            out.update({f"{section}.{k}": v for k, v in values.items()})
        else:
            out[section] = values
    return out


def config_hash(cfg: Sections) -> str:
    """12 hex digits that change with any setting (key order does not matter)."""
    return hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Check/convert a YAML or CLI value to the annotated type (ints stay ints: KFP cares)."""
    origin = getattr(typ, "__origin__", None)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        try:
            return int(value)
        except ValueError as e:
            raise ConfigError(f"{where} must be an integer, got {value!r}") from e
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where} must be a number, got {value!r}") from e
    if typ is str:
        return "" if value is None else str(value)
    if origin is list or "list" in str(typ):
        if value is None and "None" in str(typ):
            return None
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [str(v) for v in value]
    return value


def merge(obj: Any, updates: dict[str, Any], where: str = "") -> None:
    """Set ``updates`` (nested mappings of sections) on the dataclass tree ``obj``, checking keys and types."""
    hints = get_type_hints(type(obj))
    for key, value in updates.items():
        path = f"{where}.{key}" if where else key
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"unknown config key '{path}'", f"use one of: {known}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"'{path}' is a section; give it a mapping of keys")
            merge(current, value, path)
        else:
            setattr(obj, key, _coerce(value, hints[key], path))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.epochs=3`` -> (["train", "epochs"], 3); values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' has no '='", "write overrides as section.key=value, e.g. train.epochs=3")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def read_preset(preset: str | Path, example: str = "configs/dcgan-samples.yaml") -> dict[str, Any]:
    """One YAML file as a mapping of sections (its ``extends:`` left in), with a clear error for a missing,
    invalid or non-mapping file."""
    path = Path(preset)
    if not path.is_file():
        raise ConfigError(f"config preset '{path}' not found", f"pass a file from configs/, e.g. {example}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config preset '{path}' is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config preset '{path}' must be a mapping of sections")
    return data


def _base_of(name: Any, child: Path) -> Path:
    """The file ``extends: name`` in ``child`` means: a path (``.yaml`` optional) relative to ``child``'s folder,
    else a preset of configs/ (``base/paper`` is configs/base/paper.yaml)."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"config preset '{child}' has extends: {name!r}", "name one preset, e.g. extends: base/paper (configs/base/paper.yaml)")
    rel = Path(name if name.endswith((".yaml", ".yml")) else f"{name}.yaml").expanduser()
    candidates = [rel] if rel.is_absolute() else list(dict.fromkeys([child.parent / rel, defaults.configs_dir() / rel]))
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise ConfigError(
            f"config preset '{child}' extends '{name}', which is not a preset (looked for {', '.join(map(str, candidates))})",
            "name a file of configs/ without .yaml (e.g. extends: base/paper) or a path relative to the extending preset",
        )
    return found


def preset_chain(preset: str | Path, example: str = "configs/dcgan-samples.yaml") -> list[tuple[Path, dict[str, Any]]]:
    """``preset`` and the presets it extends, as (file, mapping without ``extends``), the furthest base first."""
    chain: list[tuple[Path, dict[str, Any]]] = []
    path = Path(preset)
    while True:
        data = read_preset(path, example)
        seen = [p for p, _ in chain]
        if any(p.resolve() == path.resolve() for p in seen):
            loop = " -> ".join(map(str, [*seen, path]))
            raise ConfigError(f"config presets extend each other in a cycle: {loop}", "remove one extends: so the chain ends at a preset without one")
        base = data.pop(EXTENDS, None)
        chain.append((path, data))
        if base is None:
            return chain[::-1]
        path = _base_of(base, path)


def _deep_update(into: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_update(into[key], value)
        else:
            into[key] = value
    return into


def resolve_preset(preset: str | Path, example: str = "configs/dcgan-samples.yaml") -> dict[str, Any]:
    """The mapping ``preset`` stands for once its ``extends:`` chain is merged (later files win); no defaults added."""
    merged: dict[str, Any] = {}
    for _, data in preset_chain(preset, example):
        _deep_update(merged, data)
    return merged


T = TypeVar("T", bound=Sections)


@dataclass(frozen=True)
class Schema(Generic[T]):
    """One kind of config: its root dataclass, its cross-field checks and the preset named in errors."""

    root: Callable[[], T]
    check: Callable[[T], None]
    example: str

    def load(self, preset: str | Path | None = None, overrides: list[str] | None = None) -> T:
        """Defaults, then the preset's ``extends:`` chain (furthest base first), then ``section.key=value`` overrides."""
        cfg = self.root()
        for path, data in preset_chain(preset, self.example) if preset else []:
            try:
                merge(cfg, data)
            except ConfigError as e:
                raise ConfigError(f"{e.problem} (in {path})", e.hint) from e
        return self.apply_overrides(cfg, overrides)

    def from_dict(self, data: dict[str, Any]) -> T:
        """A config from a full or partial mapping (a checkpoint's, a run's); not validated."""
        cfg = self.root()
        merge(cfg, data)
        return cfg

    def apply_overrides(self, cfg: T, overrides: list[str] | None) -> T:
        """Apply ``section.key=value`` overrides to ``cfg`` (in place) and validate it."""
        for text in overrides or []:
            keys, value = parse_override(text)
            nested: Any = value
            for k in reversed(keys):
                nested = {k: nested}
            merge(cfg, nested)
        self.check(cfg)
        return cfg

