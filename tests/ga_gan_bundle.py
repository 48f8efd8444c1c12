"""A tiny GA-GAN winner bundle for tests (not a test module): class embeddings, attention and BN statistics are
all non-trivial (fresh ones are identities), so exports and servers are checked on every path of the graph."""

from __future__ import annotations

from pathlib import Path

import torch

from histosynth.gan.bundle import save_generator
from histosynth.gan.nets import build_generator
from histosynth.gan.nets.ga_gan import ConditionalBN
from histosynth.gan.nets.ga_gan_cells import SelfAttention

CLASSES = ["blood_smear", "he_skin", "ihc_colon"]
SPEC = {"arch": "ga-gan", "genotype": "{4, 135-52-4, [1, 3]}", "image_size": 32, "latent_dim": 8, "g_width": 16, "channels": 3, "num_classes": 3}


def make_ga_gan_bundle(folder: Path, spec: dict = SPEC, classes: list[str] = CLASSES, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    G = build_generator(spec)
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, ConditionalBN):
                torch.nn.init.normal_(m.embed.weight, 1.0, 0.5)
            if isinstance(m, SelfAttention):
                m.gamma.fill_(0.5)
        G.train()
        for _ in range(3):  # running BN statistics
            G(torch.randn(16, spec["latent_dim"]), torch.randint(0, len(classes), (16,)))
    return save_generator(folder, G.eval(), G.spec(), classes, {"d_genotype": "{4, 235-66-7, [4]}"})
