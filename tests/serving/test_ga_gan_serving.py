"""A GA-GAN winner served like any generator: `histosynth export --bundle`, `histosynth serve --bundle` (a real
tritonserver), `histosynth synth --class` -> PNGs equal, pixel for pixel, to onnxruntime on the exported model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from ga_gan_bundle import CLASSES, SPEC, make_ga_gan_bundle
from PIL import Image

from histosynth.serving import latents

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~4 CLI processes importing torch, and a tritonserver

HISTOSYNTH = str(Path(sys.executable).parent / "histosynth")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HISTOSYNTH, *args], capture_output=True, text=True, timeout=300)


def _pngs(folder: Path, n: int) -> np.ndarray:
    return np.stack([np.asarray(Image.open(folder / f"{i:06d}.png").convert("RGB")) for i in range(n)])


def test_a_ga_gan_winner_serves_the_images_onnxruntime_makes(serve_cli, tmp_path):
    bundle = make_ga_gan_bundle(tmp_path / "winner")
    r = _cli("export", "--bundle", str(bundle), "--out", str(tmp_path / "onnx"), "--json")
    assert r.returncode == 0, r.stderr
    exported = json.loads(r.stdout.strip().splitlines()[-1])
    assert exported["max_abs_diff"] < 1e-4
    sess = ort.InferenceSession(exported["onnx_path"], providers=["CPUExecutionProvider"])

    serve, http, grpc, _ = serve_cli.start("--bundle", str(bundle), "--model-name", "ga-gan-winner", "--repo", str(tmp_path / "repo"), "--max-batch", "8")
    try:
        got = {}
        for name, protocol, url in (("he_skin", "http", http), ("ihc_colon", "grpc", grpc)):
            out = tmp_path / name
            r = _cli("synth", "--n", "10", "--seed", "5", "--class", name, "--out", str(out), "--url", f"127.0.0.1:{url}", "--protocol", protocol)
            assert r.returncode == 0, r.stderr
            manifest = json.loads((out / "manifest.json").read_text())
            assert manifest["model"] == "ga-gan-winner" and manifest["batch"] == 8 and {e["class"] for e in manifest["images"]} == {name}
            got[name] = _pngs(out, 10)
    finally:
        code, log = serve_cli.stop(serve)
    assert code == 0, log

    z = latents(5, range(10), SPEC["latent_dim"])
    for name, images in got.items():
        (want,) = sess.run(["images_uint8"], {"z": z, "class_id": np.full(10, CLASSES.index(name), np.int64)})
        assert images.shape == (10, 32, 32, 3) and np.array_equal(images, want), name
    assert not np.array_equal(got["he_skin"], got["ihc_colon"])  # the class reaches the served graph
