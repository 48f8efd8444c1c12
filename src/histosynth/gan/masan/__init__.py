"""MASAN: a multi-attention, sliced adversarial network for class-conditional cell images (blood smears).

A FastGAN/CellGAN-style pair trained as a SAN:

- :mod:`~histosynth.gan.masan.generator`: 4x4 -> 64/128/256 px up-sampling blocks, class AdaIN, skip-layer
  excitation, and Efficient Multi-scale Attention between blocks
  (:mod:`~histosynth.gan.masan.ema_attention`; "EMA" there is attention, unrelated to the moving average of
  weights in :mod:`histosynth.gan.weight_ema`);
- :mod:`~histosynth.gan.masan.discriminator`: down-sampling to 8x8, two reconstruction decoders, and the SAN
  last layer (:mod:`~histosynth.gan.masan.san`);
- :mod:`~histosynth.gan.masan.objective`: D's loss (GAN loss on the features, Wasserstein loss on the direction,
  L1 reconstruction), plugged into the common training step.

DiffAugment (colour / translation / cutout) comes from :mod:`histosynth.gan.diffaugment`, as for every GAN here.
Presets: ``configs/masan-paper.yaml`` (256 px, batch 64, Adam 2e-4) and ``configs/masan-samples.yaml`` (CPU).
"""

from histosynth.gan.masan.discriminator import MASANDiscriminator, recon_targets
from histosynth.gan.masan.ema_attention import EfficientMultiScaleAttention
from histosynth.gan.masan.generator import SIZES, MASANGenerator
from histosynth.gan.masan.objective import DTerms, MASANObjective
from histosynth.gan.masan.san import SANLinear

__all__ = ["SIZES", "DTerms", "EfficientMultiScaleAttention", "MASANDiscriminator", "MASANGenerator", "MASANObjective", "SANLinear", "recon_targets"]
