"""Fixtures for the evaluation-suite tests: colour-coded patch stores with source groups, tiny DCGAN bundles
(class-conditional and not) and a cheap registered extractor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

# TSTR settings that train in about a second per fit on 2 busy CPU cores: a linear probe (head only) on a frozen
# random ResNet-18 at 16 px, enough for colour-coded classes
FAST_TSTR = {"backbone": "resnet18", "init": "random", "trainable_layers": 0, "head_hidden": 0, "epochs": 2, "folds": 3, "lr": 1e-2, "batch_size": 32, "input_size": 16}
# For tests of the plumbing around TSTR (records, MLflow, reports, the CLI), not of what it measures: the fewest
# fits (2 folds x 3 settings, 1 epoch) on a 24-patch subset at 8 px
PLUMBING_TSTR = {**FAST_TSTR, "folds": 2, "epochs": 1, "input_size": 8, "max_real": 24, "n_synth_per_class": 6}


def colour_patches(n_per_class: dict[str, int], size: int = 32, seed: int = 0, groups_per_class: int = 6) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Noise patches whose class sets the dominant colour channel (an easy, learnable task), with records that
    spread each class over ``groups_per_class`` slides x regions."""
    rng = np.random.default_rng(seed)
    imgs, labels, records = [], [], []
    for ci, (cls, n) in enumerate(n_per_class.items()):
        for i in range(n):
            img = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
            img[..., ci % 3] += 120
            imgs.append(img)
            labels.append(ci)
            g = i % groups_per_class
            records.append({"source": "synthetic", "slide": f"{cls}-s{g % 3}", "region": g, "x": i, "y": 0})
    return np.stack(imgs), np.array(labels), records


def make_store(root: Path, n_per_class: dict[str, int], size: int = 32, seed: int = 0) -> Path:
    from histosynth.data.store import Patch, write_store

    imgs, labels, records = colour_patches(n_per_class, size, seed)
    classes = list(n_per_class)
    return write_store(root, [Patch(im, classes[y], r) for im, y, r in zip(imgs, labels, records)], classes=classes)


def make_bundle(path: Path, classes: list[str], conditional: bool, image_size: int = 32) -> Path:
    from histosynth.gan.bundle import save_generator
    from histosynth.gan.nets import build_generator, init_dcgan_weights

    spec = {"arch": "dcgan", "image_size": image_size, "latent_dim": 16, "g_features": 8, "channels": 3, "num_classes": len(classes) if conditional else 0}
    torch.manual_seed(0)
    gen = build_generator(spec)
    init_dcgan_weights(gen)
    return save_generator(path, gen, spec, classes)


@pytest.fixture
def pixel_extractor():
    """A cheap registered extractor (8x8 average-pooled pixels, 192-d) for plumbing tests."""
    from histosynth.evaluation import features

    def factory(device, weights=None):
        def forward(x):
            return torch.nn.functional.adaptive_avg_pool2d(x / 255.0, 8).flatten(1)

        return features.Extractor(name="test-pixels", dim=192, preprocess="avgpool 8x8 of 0..1 pixels", forward=forward, device=device,
                                  comparable=False, weights="none", weights_sha256="none", note="not comparable: test extractor")  # fmt: skip

    features.register_extractor("test-pixels", factory, overwrite=True)
    yield "test-pixels"
    features.EXTRACTORS.pop("test-pixels", None)


@pytest.fixture
def setup(tmp_path):
    """<tmp>/splits/{train,test}: two colour classes; a conditional and an unconditional 32 px DCGAN bundle."""
    splits = tmp_path / "splits"
    make_store(splits / "train", {"a": 24, "b": 24})
    make_store(splits / "test", {"a": 20, "b": 20}, seed=1)
    cond = make_bundle(tmp_path / "cond" / "generator.pt", ["a", "b"], True)
    uncond = make_bundle(tmp_path / "uncond" / "generator.pt", ["a", "b"], False)
    return {"splits": splits, "cond": cond, "uncond": uncond}
