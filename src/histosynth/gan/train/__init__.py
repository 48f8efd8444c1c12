"""GAN training: the loop and its callbacks, checkpoints and batches. Entry point: :func:`train`."""

from histosynth.gan.train.checkpoint import load_checkpoint, save_checkpoint
from histosynth.gan.train.step import GANStep
from histosynth.gan.train.trainer import TrainResult, build_models, build_optimizers, config_from_checkpoint, generator_spec, train

__all__ = [
    "GANStep",
    "TrainResult",
    "build_models",
    "build_optimizers",
    "config_from_checkpoint",
    "generator_spec",
    "load_checkpoint",
    "save_checkpoint",
    "train",
]
