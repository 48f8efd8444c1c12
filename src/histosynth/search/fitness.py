"""Train one candidate pair (G, D) briefly and score it: fitness = FID of its samples against the cached real
statistics of the FID split (lower is better).

Training follows the method: hinge loss, Adam (0.5, 0.999) with TTUR learning rates, DiffAugment on every image D
sees. The real features come from the evaluation feature cache, so every trial of every worker reuses one pass.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass

import numpy as np
import torch

from histosynth.data.loader import BatchSource, open_store
from histosynth.device import resolve_device
from histosynth.evaluation.features import EXTRACTORS, Extractor, get_extractor, register_extractor
from histosynth.evaluation.metrics import fid
from histosynth.evaluation.suite import class_allocation, fake_features, real_features
from histosynth.gan.diffaugment import DiffAugment
from histosynth.gan.losses import get_loss
from histosynth.gan.nets.ga_gan import Discriminator, Generator
from histosynth.gan.nets.ga_gan_genotype import Genotype
from histosynth.search.config import SearchConfig


@dataclass
class Data:
    """What every candidate of a search shares: the training batches, the real FID statistics, the extractor."""

    source: BatchSource
    classes: list[str]
    real_labels: np.ndarray
    real_feats: np.ndarray
    real_stats: tuple[np.ndarray, np.ndarray]
    extractor: Extractor
    device: torch.device


def extractor_for(name: str, device: torch.device) -> Extractor:
    """A registered extractor, or ``module:function`` naming a factory (registered on first use; lets a test or
    a site plug in its own network without touching the registry's module)."""
    if ":" in name and name not in EXTRACTORS:
        importlib.import_module(name.partition(":")[0])  # fail here, clearly, when the module is missing
        register_extractor(name, name)
    return get_extractor(name, device)


def load_data(cfg: SearchConfig) -> Data:
    device = resolve_device(cfg.device, "device")
    train = open_store(cfg.data_root, cfg.split)
    source = BatchSource(train, batch_size=cfg.batch_size, image_size=cfg.image_size, device=device, seed=cfg.seed)
    held = open_store(cfg.data_root, cfg.fid_split)
    extractor = extractor_for(cfg.extractor, device)
    feats, stats, idx, _ = real_features(held, cfg.fid_split, extractor, n_real=cfg.n_real or None, seed=cfg.seed, batch_size=cfg.fid_batch)
    return Data(source, list(held.classes), np.asarray(held.labels)[idx], feats, stats, extractor, device)


def build_pair(cfg: SearchConfig, g: Genotype, d: Genotype, num_classes: int) -> tuple[Generator, Discriminator]:
    gen = Generator(g, cfg.image_size, cfg.latent_dim, cfg.g_width, num_classes)
    disc = Discriminator(d, cfg.image_size, cfg.d_width, num_classes)
    return gen, disc


def train_pair(gen: Generator, disc: Discriminator, data: Data, cfg: SearchConfig, steps: int, seed: int) -> dict[str, float]:
    """``steps`` alternating D and G updates; returns the last losses."""
    gen.to(data.device).train()
    disc.to(data.device).train()
    torch.manual_seed(seed)
    loss = get_loss("hinge")
    augment = DiffAugment(cfg.augment)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    n_classes = len(data.source.classes)
    out = {"loss_d": float("nan"), "loss_g": float("nan")}
    done = 0
    while done < steps:
        for _, real, labels in data.source.batches(data.source.permutation()):
            z = torch.randn(real.shape[0], gen.latent_dim, device=data.device)
            y = torch.randint(0, n_classes, (real.shape[0],), device=data.device)
            fake = gen(z, y)
            loss_d = loss.d_loss(disc(augment(real), labels), disc(augment(fake.detach()), y))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            loss_g = loss.g_loss(disc(augment(fake), y))
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            out = {"loss_d": loss_d.item(), "loss_g": loss_g.item()}
            done += 1
            if done >= steps:
                break
    return out


def score(gen: Generator, data: Data, cfg: SearchConfig, seed: int) -> float:
    """FID of ``n_fake`` samples in the real split's class proportions."""
    gen.eval()
    ids = class_allocation(data.real_labels, data.classes, data.source.classes, cfg.n_fake, seed)
    feats, _ = fake_features(gen, {"latent_dim": cfg.latent_dim}, data.extractor, cfg.n_fake, class_ids=ids, seed=seed, batch_size=cfg.fid_batch, device=data.device)
    value = float(fid.compute(data.real_feats, feats, real_stats=data.real_stats)["fid"])
    return value if np.isfinite(value) else float("inf")


def finite(metrics: dict[str, float]) -> dict[str, float]:
    """The entries MLflow can store (an unbounded FID of a diverged candidate is kept out of the metrics)."""
    return {k: v for k, v in metrics.items() if np.isfinite(v)}


def cpu_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


def evaluate(gen: Generator, disc: Discriminator, data: Data, cfg: SearchConfig, steps: int, seed: int) -> dict[str, float]:
    """Train then score one candidate -> {fid, cost_s, params_g, params_d, loss_d, loss_g}."""
    t0 = time.perf_counter()
    losses = train_pair(gen, disc, data, cfg, steps, seed)
    value = score(gen, data, cfg, seed)
    params = {"params_g": float(sum(p.numel() for p in gen.parameters())), "params_d": float(sum(p.numel() for p in disc.parameters()))}
    return {"fid": value, "cost_s": time.perf_counter() - t0, **params, **losses}
