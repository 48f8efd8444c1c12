"""Generator and discriminator architectures, built from a plain dict so bundles can rebuild them."""

from histosynth.gan.nets.dcgan import DCGANDiscriminator, DCGANGenerator, init_dcgan_weights

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "init_dcgan_weights", "build_generator", "build_discriminator", "build_d_objective"]


def build_generator(spec: dict):
    """``spec``: {arch, image_size, latent_dim, g_features, channels, num_classes, upsample}; arch ``ddpm``: see
    :func:`histosynth.gan.nets.ddpm.build_ddpm`; arch ``masan``: :mod:`histosynth.gan.masan` (``upsample`` unused;
    ``attention`` false drops its attention layers, an ablation); arch ``ga-gan`` (a GA-GAN search winner):
    :func:`histosynth.gan.nets.ga_gan.generator_from_spec`."""
    arch = spec.get("arch", "dcgan")
    if arch == "ddpm":
        from histosynth.gan.nets.ddpm import build_ddpm  # diffusers is imported only for a DDPM

        return build_ddpm(spec)
    if arch == "dcgan":
        return DCGANGenerator(
            image_size=spec["image_size"],
            latent_dim=spec.get("latent_dim", 100),
            features=spec.get("g_features", 64),
            channels=spec.get("channels", 3),
            num_classes=spec.get("num_classes", 0),
            upsample=spec.get("upsample", "deconv"),
            cond_bn=spec.get("cond_bn", False),
            skip_z=spec.get("skip_z", False),
        )
    if arch == "masan":
        from histosynth.gan.masan import MASANGenerator

        return MASANGenerator(spec["image_size"], spec.get("latent_dim", 100), spec.get("g_features", 64), spec.get("channels", 3), spec.get("num_classes", 0), attention=spec.get("attention", True))
    if arch == "ga-gan":
        from histosynth.gan.nets.ga_gan import generator_from_spec

        return generator_from_spec(spec)
    from histosynth.errors import ConfigError

    raise ConfigError(f"unknown generator architecture '{arch}'", "use model.arch=dcgan, masan or ddpm (ga-gan generators come from `histosynth search retrain`)")


def build_discriminator(spec: dict):
    """``spec``: as :func:`build_generator`'s plus d_features, spectral_norm, d_batchnorm, d_minibatch_std; with
    ``discriminator: projected`` a :class:`~histosynth.gan.nets.projected.ProjectedDiscriminator` (heads of width
    d_features growing by ``projected_head_growth`` per stride-2 layer, images resized to ``projected_size``) whatever the arch; its ImageNet weights load separately."""
    arch = spec.get("arch", "dcgan")
    if spec.get("discriminator", "own") == "projected":
        from histosynth.gan.nets.projected import ProjectedDiscriminator

        return ProjectedDiscriminator(spec["image_size"], spec.get("num_classes", 0), spec.get("d_features", 64), spec.get("projected_size", 64), spec.get("projected_head_growth", 2))
    if arch == "dcgan":
        return DCGANDiscriminator(
            image_size=spec["image_size"],
            features=spec.get("d_features", 64),
            channels=spec.get("channels", 3),
            num_classes=spec.get("num_classes", 0),
            spectral_norm=spec.get("spectral_norm", False),
            batchnorm=spec.get("d_batchnorm", True),
            minibatch_std=spec.get("d_minibatch_std", False),
        )
    if arch == "masan":
        from histosynth.gan.masan import MASANDiscriminator

        return MASANDiscriminator(spec["image_size"], spec.get("d_features", 64), spec.get("channels", 3), spec.get("num_classes", 0), spec.get("spectral_norm", False), spec.get("d_batchnorm", True), san=spec.get("san", True))
    from histosynth.errors import ConfigError

    raise ConfigError(f"unknown discriminator architecture '{arch}'", "use model.arch=dcgan or masan")


def build_d_objective(arch: str, loss, recon_weight: float = 1.0):
    """The discriminator's own objective for the training step (``GANStep(d_objective=...)``), or None for
    architectures trained on the plain loss of D's logits."""
    if arch == "masan":
        from histosynth.gan.masan import MASANObjective

        return MASANObjective(loss, recon_weight)
    return None
