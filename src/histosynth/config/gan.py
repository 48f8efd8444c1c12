"""The GAN training config (``histosynth train``): dataclass defaults, the only ones; presets in ``configs/``."""

from __future__ import annotations

from dataclasses import dataclass, field

from histosynth import defaults
from histosynth.config.base import Schema, Sections
from histosynth.errors import ConfigError


# Names the GAN sections accept. The modules that implement them (gan.diffaugment, gan.rl_eo) import these, so
# a preset is checked when it is loaded (``--dry-run`` too) without the config layer importing the GAN code.
AUGMENT_OPS = ("color", "translation", "cutout")  # DiffAugment operations, applied in the order given
RL_EO_MODES = ("paper", "weighted", "soft-label")


def parse_policy(policy: str) -> list[str]:
    """``"color,translation"`` -> ["color", "translation"]; "" or "none" -> [] (no augmentation)."""
    names = [p.strip() for p in (policy or "").split(",") if p.strip() and p.strip() != "none"]
    unknown = [n for n in names if n not in AUGMENT_OPS]
    if unknown:
        raise ConfigError(f"unknown augment.policy entries {unknown}", f"use a comma-separated subset of: {', '.join(AUGMENT_OPS)} (or none)")
    return names


def check_mode(mode: str, weight: float, loss: str | None = None) -> None:
    """Refuse a mode, weight (and loss, when given) that do not go together."""
    if mode not in RL_EO_MODES:
        raise ConfigError(f"rl_eo.mode={mode!r} is not an RL-EO mode", f"use one of: {', '.join(RL_EO_MODES)}")
    if not weight >= 0:
        raise ConfigError(f"rl_eo.weight={weight} must be >= 0", "the paper uses 0.3")
    if mode != "paper" and weight > 1:
        raise ConfigError(f"rl_eo.weight={weight} > 1 with rl_eo.mode={mode}: the fake term's weight or target would leave [0, 1]", "use a weight in [0, 1] (the paper's is 0.3)")
    if mode == "soft-label" and loss is not None and loss not in ("bce", "lsgan"):
        raise ConfigError(f"rl_eo.mode=soft-label needs a loss with a target for fakes, and loss.name={loss} has none", "use loss.name=bce or lsgan, or rl_eo.mode=weighted")


@dataclass
class DataConfig:
    root: str = "data/splits"  # output of `histosynth data split`
    split: str = "train"
    image_size: int = defaults.IMAGE_SIZE  # patches are resized to this if they differ
    classes: list[str] | None = None  # None: every class in the split
    conditional: bool = False  # feed class ids to G and D
    hflip: bool = False  # random horizontal flips (p=0.5) per training batch
    vflip: bool = False  # random vertical flips (p=0.5) per training batch
    transpose: bool = False  # random x<->y transposition (p=0.5) per image: with both flips, all 8 right-angle rotations and reflections
    class_balance: float = 0.0  # 0: every patch once per epoch (the data's class mix); b in (0, 1]: draws weighted n_c**-b (0.5 square-root, 1 equal classes)


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
    g_cond_bn: bool = False  # conditional DCGAN G: class-conditional batch norm (per-class gain and bias) in every layer
    g_skip_z: bool = False  # with g_cond_bn: every conditional batch norm's gain and bias are also linear in z (BigGAN's skip-z)
    masan_attention: bool = True  # model.arch=masan only: Efficient Multi-scale Attention between G's blocks (false: ablation)
    san: bool = True  # model.arch=masan only: SAN last layer in D (false: a plain linear head on the GAN loss, no direction term)
    discriminator: str = "own"  # own: the arch's D; projected: Projected GAN (frozen ImageNet EfficientNet-Lite0 features + trained heads)
    projected_size: int = 64  # discriminator=projected: side the image is resized to before the feature network (multiple of 32)
    projected_head_growth: int = 2  # discriminator=projected: channel factor per stride-2 head layer; 2 as Projected GAN, 1 keeps the width (cheaper)


@dataclass
class AugmentConfig:
    """DiffAugment (histosynth.gan.diffaugment) on every image D sees, real and fake: what keeps D from memorising ~1k patches."""

    policy: str = "color,translation,cutout"  # comma-separated subset of color, translation, cutout; "none" disables
    p: float = 1.0  # probability that an image gets each operation (drawn per image and operation); 1: always, as DiffAugment


@dataclass
class LossConfig:
    name: str = "bce"  # bce (non-saturating G), hinge, lsgan, wgan, ganetic
    real_label: float = 0.9  # one-sided label smoothing (Salimans et al.)
    gp_weight: float = 0.0  # >0 adds a gradient penalty on D (WGAN-GP uses 10)
    recon_weight: float = 1.0  # model.arch=masan only: weight of D's L1 reconstruction of real images (0: off)
    lecam_weight: float = 0.0  # >0 adds LeCam regularisation to D's loss (Tseng et al. 2021, histosynth.gan.lecam)
    lecam_decay: float = 0.99  # decay of LeCam's moving averages of D's real and fake logits


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
class Config(Sections):
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


def validate(cfg: Config) -> None:
    sizes = (64, 128, 256) if cfg.model.arch == "masan" else (32, 64, 128)
    if cfg.data.image_size not in sizes:
        raise ConfigError(f"data.image_size={cfg.data.image_size} is not supported for model.arch={cfg.model.arch}", f"use {sizes[0]}, {sizes[1]} or {sizes[2]}")
    if cfg.model.arch != "masan" and not (cfg.model.masan_attention and cfg.model.san):
        off = [k for k in ("masan_attention", "san") if not getattr(cfg.model, k)]
        raise ConfigError(f"model.{off[0]}=false with model.arch={cfg.model.arch}: it switches off a part of MASAN", "leave it at true, or use model.arch=masan")
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
    parse_policy(cfg.augment.policy)
    if not 0.0 < cfg.augment.p <= 1.0:
        raise ConfigError(f"augment.p={cfg.augment.p} must be in (0, 1]", "use 1 (every image, as DiffAugment) or e.g. 0.5; augment.policy=none turns augmentation off")
    if not 0.0 <= cfg.data.class_balance <= 1.0:
        raise ConfigError(f"data.class_balance={cfg.data.class_balance} is outside [0, 1]", "use 0 (the data's class mix), 1 (equal classes) or between, e.g. 0.5")
    if cfg.loss.lecam_weight < 0 or not 0.0 <= cfg.loss.lecam_decay < 1.0:
        raise ConfigError(f"loss.lecam_weight={cfg.loss.lecam_weight}, loss.lecam_decay={cfg.loss.lecam_decay}: the weight must be >= 0 and the decay in [0, 1)", "use loss.lecam_weight=0 (off) or e.g. 0.1, with loss.lecam_decay=0.99")
    check_projected(cfg)
    if cfg.model.g_cond_bn and (cfg.model.arch != "dcgan" or not cfg.data.conditional):
        raise ConfigError(f"model.g_cond_bn=true with model.arch={cfg.model.arch}, data.conditional={str(cfg.data.conditional).lower()}: class-conditional batch norm is a layer of the conditional DCGAN generator", "use model.arch=dcgan with data.conditional=true, or model.g_cond_bn=false")
    if cfg.model.g_skip_z and not cfg.model.g_cond_bn:
        raise ConfigError("model.g_skip_z=true with model.g_cond_bn=false: skip-z feeds the latent to G's conditional batch norms", "set model.g_cond_bn=true too, or model.g_skip_z=false")
    if cfg.optim.clip_mode not in ("norm", "value"):
        raise ConfigError(f"optim.clip_mode={cfg.optim.clip_mode!r} is not a clipping mode", "use norm (max total grad norm) or value (max |grad| per element)")
    check_mode(cfg.rl_eo.mode, cfg.rl_eo.weight, cfg.loss.name)
    if cfg.method == "ddpm" and cfg.rl_eo.enabled:
        raise ConfigError("method=ddpm with rl_eo.enabled=true: the RL-EO reward shapes a GAN discriminator, and a DDPM has none", "use rl_eo.enabled=false, or a GAN preset such as configs/rl-eo-samples.yaml")


def check_projected(cfg: Config) -> None:
    """model.discriminator: what a Projected GAN discriminator (logits per head and position) combines with."""
    if cfg.model.discriminator not in ("own", "projected"):
        raise ConfigError(f"model.discriminator={cfg.model.discriminator!r} is not a discriminator", "use own (the architecture's) or projected (Projected GAN)")
    if cfg.model.discriminator == "own":
        return
    if cfg.model.arch != "dcgan" or cfg.method == "ddpm":
        raise ConfigError(f"model.discriminator=projected with model.arch={cfg.model.arch}: only the DCGAN harness takes it (MASAN has its own objective, a DDPM no discriminator)", "use model.arch=dcgan, or model.discriminator=own")
    if cfg.rl_eo.enabled:
        raise ConfigError("model.discriminator=projected with rl_eo.enabled=true: the RL-EO reward weights one logit per image, and a Projected GAN D gives one per head and position", "use rl_eo.enabled=false, or model.discriminator=own")
    if cfg.loss.gp_weight > 0:
        raise ConfigError(f"model.discriminator=projected with loss.gp_weight={cfg.loss.gp_weight}: the penalty would differentiate through the frozen feature network for every head", "use loss.gp_weight=0 (spectral norm keeps the heads smooth)")
    if cfg.model.projected_size < 32 or cfg.model.projected_size % 32:
        raise ConfigError(f"model.projected_size={cfg.model.projected_size} must be a multiple of 32 (the feature network halves the image five times)", "use 64 (native for 64 px patches), 128 or 224 (the paper's)")
    if cfg.model.projected_head_growth not in (1, 2):
        raise ConfigError(f"model.projected_head_growth={cfg.model.projected_head_growth} is not a head width factor", "use 2 (Projected GAN's heads, channels double per stride-2 layer) or 1 (the width stays)")


GAN = Schema(Config, validate, "configs/dcgan-samples.yaml")
load_config = GAN.load
config_from_dict = GAN.from_dict
apply_overrides = GAN.apply_overrides
