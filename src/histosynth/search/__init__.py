"""GA-GAN: evolutionary search of the cell shared by a conditional GAN's generator and discriminator.

:mod:`~histosynth.search.genotype` (the encoding), :mod:`~histosynth.search.cells` and
:mod:`~histosynth.search.nets` (the networks), :mod:`~histosynth.search.aging_evolution` (the evolution, as an
Optuna sampler), :mod:`~histosynth.search.fitness` (train briefly, score by FID), :mod:`~histosynth.search.worker`
(parallel, fault-tolerant evaluation) and :mod:`~histosynth.search.driver` (stages, status, retraining the winner).
"""
