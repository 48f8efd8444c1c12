"""Typed run configuration: dataclass defaults, YAML presets (``configs/``) and ``key=value`` overrides.

A preset only lists what differs from the defaults below; unknown keys are errors, so a typo in a preset
never silently trains the wrong model.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from histosynth import defaults
from histosynth.errors import ConfigError


@dataclass
class DataConfig:
    root: str = "data/splits"  # output of `histosynth data split`
    split: str = "train"
    image_size: int = defaults.IMAGE_SIZE  # patches are resized to this if they differ
    classes: list[str] | None = None  # None: every class in the split
    conditional: bool = False  # feed class ids to G and D
    hflip: bool = False  # random horizontal flips (p=0.5) per training batch
    vflip: bool = False  # random vertical flips (p=0.5) per training batch


@dataclass
class ModelConfig:
    arch: str = "dcgan"
    latent_dim: int = defaults.LATENT_DIM
    g_features: int = 64
    d_features: int = 64
    channels: int = 3
    spectral_norm: bool = False  # SN-GAN: spectral norm on every D layer
    d_batchnorm: bool = True  # WGAN-GP needs no batch norm in D
    d_minibatch_std: bool = False  # D sees each batch's feature spread (ProGAN): counters mode collapse
    upsample: str = "resize"  # G's x2 layers: resize (nearest + 3x3 conv, no checkerboard) or deconv (the paper's)


@dataclass
class AugmentConfig:
    """DiffAugment (histosynth.gan.diffaugment) on every image D sees, real and fake: what keeps D from memorising ~1k patches."""

    policy: str = "color,translation,cutout"  # comma-separated subset of color, translation, cutout; "none" disables


@dataclass
class LossConfig:
    name: str = "bce"  # bce (non-saturating G), hinge, lsgan, wgan, ganetic
    real_label: float = 0.9  # one-sided label smoothing (Salimans et al.)
    gp_weight: float = 0.0  # >0 adds a gradient penalty on D (WGAN-GP uses 10)
    recon_weight: float = 1.0  # model.arch=masan only: weight of D's L1 reconstruction of real images (0: off)


@dataclass
class OptimConfig:
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    grad_clip: float = 0.1  # per network: max grad norm (clip_mode=norm) or max |grad| element (value); 0 disables
    clip_mode: str = "norm"  # norm (rescale the whole gradient) or value (clamp each element: the paper's "clip value")
    d_steps: int = 1  # D updates per G update


@dataclass
class TrainConfig:
    epochs: int = 200
    max_steps: int = 0  # >0 stops after this many G steps (smoke runs, benchmarks)
    batch_size: int = 128
    seed: int = defaults.SEED
    device: str = "auto"  # auto: cuda if present else cpu
    amp: bool = True  # mixed precision on CUDA (bf16 or fp16)
    cpu_bf16: bool = False  # bf16 autocast on CPUs with native bf16 (AVX512-BF16/AMX): ~1.5x faster steps
    deterministic: bool = True  # deterministic kernels (bit-exact resume on CPU)
    num_workers: int = 0
    log_every: int = 10  # steps between metric logs
    sample_every: int = 1  # epochs between sample grids
    checkpoint_every: int = 1  # epochs between checkpoints
    n_samples: int = 64  # images in the fixed-noise grid
    ema_decay: float = 0.999  # >0: exponential moving average of G's weights, used for samples and the bundle
    out_dir: str = ""  # empty: <state>/runs/<run name>


@dataclass
class RLEOConfig:
    """RL-EO: similarity(real_i, fake_i) from a frozen MFT-SNN in D's loss (how: histosynth.gan.rl_eo)."""

    enabled: bool = False
    mode: str = "paper"  # paper (L_D - w*mean(s), inert), weighted ((1 - w*s_i) * l_fake_i), soft-label (fake target w*s_i)
    snn: str = ""  # trained similarity network (`histosynth snn train`), loaded by histosynth.snn.load_similarity
    weight: float = 0.3  # reward weight w (paper: 0.3)
    half: bool = True  # run the SNN in half precision on CUDA (fp32 on CPU)


@dataclass
class DDPMConfig:
    """Table 1's diffusion baseline (``method: ddpm``, histosynth.gan.nets.ddpm): UNet size, noise schedule, DDIM steps."""

    base_channels: int = 64  # UNet widths base * (1, 2, 4, 4, ..) per resolution
    levels: int = 4  # resolutions (the image is halved levels - 1 times)
    layers_per_block: int = 2
    attention: bool = True  # self-attention at the two lowest resolutions and in the middle block
    train_timesteps: int = 1000  # T of the forward process
    beta_schedule: str = "linear"  # Ho et al.: linear 1e-4 .. 0.02
    sample_steps: int = 50  # DDIM (eta = 0) steps for samples and evaluation


@dataclass
class TrackingConfig:
    tracking_uri: str = ""  # empty: MLFLOW_TRACKING_URI or the local SQLite store
    experiment: str = defaults.EXPERIMENT
    run_name: str = ""
    register_as: str = ""  # non-empty: register the generator under this model name


@dataclass
class Config:
    method: str = "dcgan"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    rl_eo: RLEOConfig = field(default_factory=RLEOConfig)
    ddpm: DDPMConfig = field(default_factory=DDPMConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

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
    if origin is list or (origin is None and str(typ).startswith("list")) or "list" in str(typ):
        if value is None and "None" in str(typ):
            return None
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [str(v) for v in value]
    return value


def _merge(obj: Any, updates: dict[str, Any], where: str) -> None:
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
            _merge(current, value, path)
        else:
            setattr(obj, key, _coerce(value, hints[key], path))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.epochs=3`` -> (["train", "epochs"], 3); values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' has no '='", "write overrides as section.key=value, e.g. train.epochs=3")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def read_preset(preset: str | Path, example: str = "configs/dcgan-samples.yaml") -> dict[str, Any]:
    """A YAML preset as a mapping of sections, with a clear error for a missing, invalid or non-mapping file."""
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


def load_config(preset: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML preset, then ``section.key=value`` overrides."""
    cfg = Config()
    if preset:
        _merge(cfg, read_preset(preset), "")
    return apply_overrides(cfg, overrides)


def config_from_dict(data: dict[str, Any]) -> Config:
    cfg = Config()
    _merge(cfg, data, "")
    return cfg


def validate(cfg: Config) -> None:
    sizes = (64, 128, 256) if cfg.model.arch == "masan" else (32, 64, 128)
    if cfg.data.image_size not in sizes:
        raise ConfigError(f"data.image_size={cfg.data.image_size} is not supported for model.arch={cfg.model.arch}", f"use {sizes[0]}, {sizes[1]} or {sizes[2]}")
    if cfg.model.arch == "masan" and cfg.rl_eo.enabled:
        raise ConfigError("model.arch=masan with rl_eo.enabled=true: MASAN's discriminator trains on its own SAN objective, which the RL-EO reward does not reshape", "use rl_eo.enabled=false, or model.arch=dcgan")
    if cfg.train.batch_size < 2:
        raise ConfigError("train.batch_size must be >= 2 (batch norm needs more than one sample)")
    if cfg.train.device not in ("auto", "cpu", "cuda") and not cfg.train.device.startswith("cuda:"):
        raise ConfigError(f"train.device={cfg.train.device!r} is not a device", "use auto, cpu, cuda or cuda:N")
    if not 0.0 <= cfg.train.ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay={cfg.train.ema_decay} must be in [0, 1)", "use 0 (off) or e.g. 0.999")
    if cfg.model.upsample not in ("resize", "deconv"):
        raise ConfigError(f"model.upsample={cfg.model.upsample!r} is not an up-sampling mode", "use resize (nearest + conv) or deconv (the paper's transposed conv)")
    from histosynth.gan.diffaugment import parse_policy

    parse_policy(cfg.augment.policy)
    if cfg.optim.clip_mode not in ("norm", "value"):
        raise ConfigError(f"optim.clip_mode={cfg.optim.clip_mode!r} is not a clipping mode", "use norm (max total grad norm) or value (max |grad| per element)")
    from histosynth.gan.rl_eo import check_mode

    check_mode(cfg.rl_eo.mode, cfg.rl_eo.weight, cfg.loss.name)
    if cfg.method == "ddpm" and cfg.rl_eo.enabled:
        raise ConfigError("method=ddpm with rl_eo.enabled=true: the RL-EO reward shapes a GAN discriminator, and a DDPM has none", "use rl_eo.enabled=false, or a GAN preset such as configs/rl-eo-samples.yaml")


def config_hash(cfg: Config) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def apply_overrides(cfg: Config, overrides: list[str] | None) -> Config:
    """Apply ``section.key=value`` overrides to an existing config (in place) and validate it."""
    for text in overrides or []:
        keys, value = parse_override(text)
        nested: Any = value
        for k in reversed(keys):
            nested = {k: nested}
        _merge(cfg, nested, "")
    validate(cfg)
    return cfg
