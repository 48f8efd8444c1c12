"""A real tritonserver (python backend, onnxruntime) serving tiny generators over HTTP and gRPC."""

from __future__ import annotations

import re
import threading
import urllib.request

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as th

from histosynth.errors import HistosynthError, ServerError
from histosynth.serving import GeneratorClient, TritonServer, build_repository, latents, synthesize, write_pngs

pytestmark = pytest.mark.integration

PROTOCOLS = ["http", "grpc"]


def _url(server, protocol):
    return server.http_url if protocol == "http" else server.grpc_url


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shapes_dtypes_and_parity_with_onnxruntime(triton, onnx_models, protocol):
    z = latents(3, range(5), 16)
    sess = ort.InferenceSession(str(onnx_models["gen"]), providers=["CPUExecutionProvider"])
    ref_f, ref_u8 = sess.run(["images", "images_uint8"], {"z": z})
    with GeneratorClient(_url(triton, protocol), protocol, model="gen") as client:
        info = client.info
        assert (info.max_batch_size, info.latent_dim, info.image_size, info.classes) == (16, 16, 32, [])
        u8, version = client.generate(z)
        f, _ = client.generate(z, output="images")
    assert version == "1"
    assert u8.dtype == np.uint8 and u8.shape == (5, 32, 32, 3)
    assert f.dtype == np.float32 and f.shape == (5, 3, 32, 32)
    assert np.array_equal(u8, ref_u8) and np.array_equal(f, ref_f)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_conditional(triton, protocol):
    with GeneratorClient(_url(triton, protocol), protocol, model="cgen") as client:
        assert client.info.classes == ["benign", "invasive", "normal"]
        z = latents(0, [0, 0, 0], 16)  # one latent, three classes
        imgs, version = client.generate(z, np.array([0, 1, 2]))
        assert version == "3" and imgs.shape == (3, 32, 32, 3)
        assert not np.array_equal(imgs[0], imgs[1]) and not np.array_equal(imgs[1], imgs[2])
        with pytest.raises(ServerError, match=r"class_id must be in \[0, 2\]"):
            client.generate(z, np.array([0, 7, 1]))
        with pytest.raises(HistosynthError, match="class-conditional"):
            client.generate(z)


def test_same_seed_same_images_whatever_the_split(triton, tmp_path):
    with GeneratorClient(triton.http_url, "http", model="cgen") as http, GeneratorClient(triton.grpc_url, "grpc", model="cgen") as grpc:
        a = synthesize(http, 20, seed=7, batch=16)
        b = synthesize(http, 20, seed=7, batch=3)
        c = synthesize(grpc, 20, seed=7, batch=7, class_name=None)
        d = synthesize(http, 20, seed=8, batch=16)
        e = synthesize(grpc, 5, seed=7, batch=5, class_name="invasive")
    assert np.array_equal(a.images, b.images) and np.array_equal(a.images, c.images)
    assert np.array_equal(a.class_ids, np.arange(20) % 3)
    assert not np.array_equal(a.images, d.images)
    assert np.array_equal(e.images[1], a.images[1])  # sample 1 is class 1 ('invasive') in the round-robin too
    assert e.class_ids.tolist() == [1] * 5
    write_pngs(a, tmp_path / "a", {"classes": ["benign", "invasive", "normal"]})
    write_pngs(b, tmp_path / "b", {"classes": ["benign", "invasive", "normal"]})
    for i in range(20):
        assert (tmp_path / "a" / f"{i:06d}.png").read_bytes() == (tmp_path / "b" / f"{i:06d}.png").read_bytes()


def test_concurrent_clients_get_their_own_images(triton):
    """Dynamic batching merges requests from several clients (one client per thread): each gets its own."""
    with GeneratorClient(triton.http_url, "http", model="gen") as c:
        expected = {s: synthesize(c, 8, seed=s, batch=8).images for s in range(4)}
    got, errors = {}, []

    def worker(seed, protocol):
        try:
            with GeneratorClient(_url(triton, protocol), protocol, model="gen") as client:
                for _ in range(3):
                    got[seed] = synthesize(client, 8, seed=seed, batch=4).images
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(s, PROTOCOLS[s % 2])) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for s in range(4):
        assert np.array_equal(got[s], expected[s])


def test_errors(triton):
    with pytest.raises(ServerError, match=r"model 'nope' is not served.*") as e:
        GeneratorClient(triton.http_url, "http", model="nope")
    assert "cgen, gen" in e.value.hint
    with pytest.raises(HistosynthError, match="serves 2 ready models"):
        GeneratorClient(triton.grpc_url, "grpc")
    with GeneratorClient(triton.http_url, "http", model="cgen") as client:
        with pytest.raises(HistosynthError, match="unknown class 'lymphoma'") as e:
            synthesize(client, 4, seed=0, class_name="lymphoma")
        assert "benign, invasive, normal" in e.value.hint
        with pytest.raises(HistosynthError, match="exceeds the max_batch_size 16"):
            synthesize(client, 40, seed=0, batch=32)
    # the server enforces max_batch_size too (a client that skips the check)
    raw = th.InferenceServerClient(triton.http_url)
    try:
        z = th.InferInput("z", [17, 16], "FP32")
        z.set_data_from_numpy(np.zeros((17, 16), np.float32))
        with pytest.raises(Exception, match="batch-size must be <= 16"):
            raw.infer("gen", [z])
    finally:
        raw.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_down(protocol):

    port = _closed_port()
    with pytest.raises(ServerError, match=f"no Triton server answers at 127.0.0.1:{port} over {protocol}") as e:
        GeneratorClient(f"127.0.0.1:{port}", protocol)
    assert "histosynth serve" in e.value.hint


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_endpoint(triton):
    with GeneratorClient(triton.http_url, "http", model="gen") as client:
        client.generate(latents(0, range(2), 16))
    text = urllib.request.urlopen(triton.metrics_url, timeout=10).read().decode()
    m = re.search(r'^nv_inference_request_success\{model="gen",version="1"\} (\d+)', text, re.M)
    assert m and int(m.group(1)) >= 1
    assert "nv_inference_queue_duration_us" in text


def test_port_in_use_and_bad_model(triton, tmp_path, onnx_models):
    with pytest.raises(ServerError, match="already in use"):
        TritonServer(triton.repo, triton.http_port, _closed_port(), _closed_port(), workdir=tmp_path / "w1").start()
    repo = tmp_path / "repo"
    model_dir = build_repository(onnx_models["gen"], repo, "broken", 1)
    (model_dir / "1" / "model.onnx").write_bytes(b"not an onnx file")
    server = TritonServer(repo, _closed_port(), _closed_port(), _closed_port(), workdir=tmp_path / "w2")
    with server, pytest.raises(ServerError, match="log tail") as e:
        server.wait_ready(timeout=60)
    assert "broken" in str(e.value)
    assert not server.running()
