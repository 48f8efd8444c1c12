"""Using a trained bundle: the similarity loader API, pair metrics, the duplicate search, the mft-snn extractor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from histosynth.data.store import PatchStore
from histosynth.snn import load_similarity
from histosynth.snn.score import best_threshold, cached_embeddings, embed_images, pair_metrics, roc_auc, search

@pytest.mark.unit
def test_roc_auc_and_threshold_hand_values():
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    y = np.array([1, 0, 1, 0, 0])
    assert roc_auc(s, y) == pytest.approx(5 / 6)  # positives beat 5 of 6 negative pairings
    assert roc_auc(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)  # ties count half
    t = best_threshold(s, y)
    assert ((s >= t) == y.astype(bool)).mean() == pytest.approx(0.8)
    m = pair_metrics(s, y, np.array([0, 1, 0, 2, 2]), threshold=0.75)
    assert m["accuracy"] == pytest.approx(0.6) and m["auc_within"] == pytest.approx(0.5) and m["auc_across"] == pytest.approx(1.0)


@pytest.mark.integration
def test_load_similarity_api(stage1_bundle):
    sim = load_similarity(stage1_bundle.bundle, "cpu", half=True)  # half is ignored on CPU
    assert not sim.half and not sim.model.training
    assert all(not p.requires_grad for p in sim.model.parameters())
    assert sim.init["init"] == "random"
    torch.manual_seed(0)
    a = torch.rand(4, 3, 64, 64, requires_grad=True) * 2 - 1  # any size: resized to the trained 32 px
    b = torch.rand(4, 3, 20, 20) * 2 - 1
    s = sim.similarity(a, b)
    assert s.shape == (4,) and s.dtype == torch.float32 and not s.requires_grad
    assert (s >= 0).all() and (s <= 1).all()
    assert torch.allclose(s, sim.similarity(b, a), atol=1e-6)
    assert torch.allclose(sim.similarity(a, a), torch.ones(4), atol=1e-5)
    with pytest.raises(ValueError, match="differ"):
        sim.similarity(a, b[:2])


@pytest.mark.integration
def test_search_finds_the_exact_patch(stage1_bundle, splits_root, private_cache):
    sim = load_similarity(stage1_bundle.bundle, "cpu")
    store = PatchStore(splits_root / "train")
    from histosynth.snn.score import bundle_key

    bank = cached_embeddings(sim.model, bundle_key(stage1_bundle.bundle), store, sim.device)
    assert bank.shape == (len(store), 16)
    assert np.allclose(np.linalg.norm(bank, axis=1), 1, atol=1e-5)
    picks = [0, 17, 41]
    q = embed_images(sim.model, np.asarray(store.images[picks]), sim.device)
    idx, sims = search(q, bank, k=3)
    assert idx[:, 0].tolist() == picks and np.allclose(sims[:, 0], 1.0, atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-9).all()  # sorted, most similar first
    # the cache is reused: a poisoned cache file of the right length is what comes back
    from histosynth import defaults

    files = list((defaults.paths().cache / "snn-embeddings").glob("*.npy"))
    assert len(files) == 1
    np.save(files[0], np.zeros_like(bank))
    assert not cached_embeddings(sim.model, bundle_key(stage1_bundle.bundle), store, sim.device).any()


@pytest.mark.integration
def test_mft_snn_extractor(stage1_bundle):
    from histosynth.errors import HistosynthError
    from histosynth.evaluation.features import get_extractor

    with pytest.raises(HistosynthError, match="needs a trained SNN bundle") as e:
        get_extractor("mft-snn", "cpu")
    assert "--weights" in e.value.hint
    ex = get_extractor("mft-snn", "cpu", weights=str(stage1_bundle.bundle))
    imgs = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    f = ex(imgs)
    assert f.shape == (3, 16) and not ex.comparable and "random" in ex.note
    assert np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)


@pytest.mark.integration
def test_bundle_records_init_and_stage(stage1_bundle):
    from histosynth.snn.mft_snn import read_bundle

    extra = read_bundle(stage1_bundle.bundle)["extra"]
    assert extra["init"]["init"] == "random" and extra["stage"] == "1"
    assert extra["stages"][0]["trainable"] == 8 and len(extra["stages"][0]["trainable_layers"]) == 8
    assert 0.0 <= extra["threshold"] <= 1.0
