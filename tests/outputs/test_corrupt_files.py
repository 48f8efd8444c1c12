"""Damaged bundles and checkpoints are user errors: error/fix, exit 2, and none of PyTorch's internals."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.unit

DAMAGE = {
    "truncated": lambda good: good[: len(good) // 2],
    "garbage": lambda good: np.random.default_rng(0).bytes(len(good)),
    "empty": lambda good: b"",
    "text": lambda good: b"hello, this is not a model\n",
}


def damaged(tmp_path, fmt: str, kind: str):
    good = tmp_path / "good.pt"
    torch.save({"format": fmt, "state_dict": {"w": torch.zeros(256)}}, good)
    bad = tmp_path / f"{kind}.pt"
    bad.write_bytes(DAMAGE[kind](good.read_bytes()))
    return bad


def clean_user_error(result, *words: str) -> None:
    code, _, err = result
    flat = " ".join(err.split())
    assert code == 2, err
    assert flat.startswith("error:") and "fix:" in flat and "Traceback" not in flat
    for leak in ("file an issue", "weights_only", "torch.load", "miniz", "PytorchStreamReader"):
        assert leak not in flat, err
    for w in words:
        assert w in flat, err


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_generator_bundle(cli, tmp_path, kind):
    bad = damaged(tmp_path, "histosynth.generator/1", kind)
    clean_user_error(cli("export", "--bundle", bad, "-o", tmp_path / "onnx"), "generator bundle", str(bad))


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_checkpoint(cli, tmp_path, kind):
    bad = damaged(tmp_path, "histosynth.checkpoint/1", kind)
    clean_user_error(cli("train", "--resume", bad), "checkpoint", str(bad))


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_snn_bundle(cli, tmp_path, kind):
    bad = damaged(tmp_path, "histosynth.snn/1", kind)
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    clean_user_error(cli("snn", "score", "-b", bad, "--a", img, "--b", img), "SNN bundle", str(bad))


def test_a_bundle_whose_weights_do_not_fit_its_spec(cli, tmp_path):
    bad = tmp_path / "generator.pt"
    torch.save({"format": "histosynth.generator/1", "spec": {"arch": "dcgan"}, "classes": [], "state_dict": {"w": torch.zeros(2)}, "extra": {}}, bad)
    clean_user_error(cli("export", "--bundle", bad, "-o", tmp_path / "onnx"), "damaged")
    assert not os.path.exists(tmp_path / "onnx" / "model.onnx")
