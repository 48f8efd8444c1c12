"""GA-GAN: evolutionary search of the cell shared by a conditional GAN's generator and discriminator.

The encoding and the networks live with the other architectures (:mod:`histosynth.gan.nets.ga_gan_genotype`,
:mod:`~histosynth.gan.nets.ga_gan_cells`, :mod:`~histosynth.gan.nets.ga_gan`), so a winner's generator bundle
rebuilds, exports and serves without this package. Here: :mod:`~histosynth.search.aging_evolution` (the
evolution, as an Optuna sampler), :mod:`~histosynth.search.fitness` (train briefly, score by FID),
:mod:`~histosynth.search.worker` (parallel, fault-tolerant evaluation) and :mod:`~histosynth.search.driver`
(stages, status, retraining the winner).
"""
