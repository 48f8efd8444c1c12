"""histosynth: GANs for medical microscopy patches, from versioned data to served generators."""

__version__ = "0.1.0"
