"""ONNX export: parity with PyTorch, dynamic batch, the serving signature, atomic failure."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from histosynth.gan.bundle import load_generator
from histosynth.errors import HistosynthError
from histosynth.export.onnx import ExportError, export_bundle, export_onnx, onnx_metadata

pytestmark = pytest.mark.unit


def _torch_outputs(bundle, z, c=None):
    g, _ = load_generator(bundle)
    with torch.no_grad():
        x = g(torch.from_numpy(z), None if c is None else torch.from_numpy(c)).numpy()
    u8 = np.clip(np.round((x.astype(np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    return x, u8


@pytest.mark.parametrize("kind", ["gen", "cgen"])
def test_report_and_signature(kind, bundles, tmp_path):
    report = export_onnx(bundles[kind], tmp_path / "out", batch_for_check=8)
    path = tmp_path / "out" / "model.onnx"
    assert report["onnx_path"] == str(path) and path.is_file()
    assert report["max_abs_diff"] < 1e-4 and report["max_abs_diff_uint8"] <= 1
    assert set(report["per_batch"]) == {"1", "8"}
    assert report["opset"] == 17
    json.dumps(report)  # parity.json-serialisable

    model = onnx.load(str(path))
    ins = {i.name: i for i in model.graph.input}
    expected_inputs = {"z", "class_id"} if kind == "cgen" else {"z"}
    assert set(ins) == expected_inputs
    z_dims = ins["z"].type.tensor_type.shape.dim
    assert z_dims[0].dim_param and z_dims[1].dim_value == 16  # dynamic batch, fixed latent
    assert ins["z"].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    if kind == "cgen":
        assert ins["class_id"].type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert len(ins["class_id"].type.tensor_type.shape.dim) == 1
    outs = {o.name: o.type.tensor_type for o in model.graph.output}
    assert outs["images"].elem_type == onnx.TensorProto.FLOAT and outs["images_uint8"].elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in outs["images"].shape.dim][1:] == [3, 32, 32]
    assert [d.dim_value for d in outs["images_uint8"].shape.dim][1:] == [32, 32, 3]

    meta = onnx_metadata(path)
    assert meta["spec"]["latent_dim"] == 16 and meta["classes"] == (["benign", "invasive", "normal"] if kind == "cgen" else [])


@pytest.mark.parametrize("kind", ["gen", "cgen"])
@pytest.mark.parametrize("batch", [1, 37])
def test_dynamic_batch_matches_torch(kind, batch, bundles, onnx_models):
    rng = np.random.default_rng(batch)
    z = rng.standard_normal((batch, 16), dtype=np.float32)
    feeds = {"z": z}
    c = None
    if kind == "cgen":
        c = rng.integers(0, 3, batch).astype(np.int64)
        feeds["class_id"] = c
    sess = ort.InferenceSession(str(onnx_models[kind]), providers=["CPUExecutionProvider"])
    images, images_u8 = sess.run(["images", "images_uint8"], feeds)
    ref, ref_u8 = _torch_outputs(bundles[kind], z, c)
    assert images.shape == (batch, 3, 32, 32) and images.dtype == np.float32
    assert images_u8.shape == (batch, 32, 32, 3) and images_u8.dtype == np.uint8
    np.testing.assert_allclose(images, ref, atol=1e-5, rtol=0)
    assert np.abs(images_u8.astype(int) - ref_u8.astype(int)).max() <= 1
    assert images.min() >= -1 and images.max() <= 1


@pytest.mark.parametrize("skip_z", [False, True])
def test_conditional_batch_norm_generator_exports_with_parity(tmp_path, skip_z):
    """model.g_cond_bn: the per-class gains and biases are embedding lookups in the graph, per sample (with
    model.g_skip_z, plus linear maps of z)."""
    from histosynth.gan.bundle import save_generator
    from histosynth.gan.nets import build_generator, init_dcgan_weights

    spec = {"arch": "dcgan", "image_size": 32, "latent_dim": 16, "g_features": 8, "channels": 3, "num_classes": 3, "upsample": "resize", "cond_bn": True, "skip_z": skip_z}
    torch.manual_seed(0)
    g = build_generator(spec)
    init_dcgan_weights(g)
    for m in g.modules():
        if isinstance(m, torch.nn.Embedding) and m.embedding_dim != 3:  # the per-class gains and biases: not the identity
            torch.nn.init.normal_(m.weight, 0.0, 0.5)
        if isinstance(m, torch.nn.Linear):  # skip-z's maps start at 0
            torch.nn.init.normal_(m.weight, 0.0, 0.1)
    bundle = save_generator(tmp_path / "cbn", g, spec, ["a", "b", "c"])
    report = export_onnx(bundle, tmp_path / "out", batch_for_check=8)
    assert report["max_abs_diff_uint8"] <= 1
    z = np.random.default_rng(0).standard_normal((6, 16), dtype=np.float32)
    c = np.array([0, 1, 2, 0, 1, 2], dtype=np.int64)
    sess = ort.InferenceSession(report["onnx_path"], providers=["CPUExecutionProvider"])
    images = sess.run(["images"], {"z": z, "class_id": c})[0]
    np.testing.assert_allclose(images, _torch_outputs(bundle, z, c)[0], atol=1e-5, rtol=0)
    same_z = sess.run(["images"], {"z": np.repeat(z[:1], 3, 0), "class_id": c[:3]})[0]
    assert np.abs(same_z[0] - same_z[1]).mean() > 1e-3  # the class changes the image


def test_samples_do_not_depend_on_batch_neighbours(onnx_models):
    """What makes 'same seed, any batch split -> same images' hold on the server."""
    sess = ort.InferenceSession(str(onnx_models["gen"]), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).standard_normal((37, 16), dtype=np.float32)
    whole = sess.run(["images_uint8"], {"z": z})[0]
    parts = np.concatenate([sess.run(["images_uint8"], {"z": z[i : i + 5]})[0] for i in range(0, 37, 5)])
    assert np.array_equal(whole, parts)


def test_failed_parity_leaves_nothing(bundles, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="parity check failed"):
        export_onnx(bundles["gen"], out / "model.onnx", atol=-1.0)  # no difference can pass a negative tolerance
    assert list(out.iterdir()) == []


def test_missing_bundle(tmp_path):
    with pytest.raises(HistosynthError, match="not found"):
        export_onnx(tmp_path / "nope.pt", tmp_path / "m.onnx")


def test_export_bundle_is_cached(bundles, tmp_path):
    first = export_bundle(bundles["cgen"], tmp_path / "e")
    second = export_bundle(bundles["cgen"], tmp_path / "e")
    assert not first["cached"] and second["cached"]
    assert json.loads((tmp_path / "e" / "parity.json").read_text())["sha256"] == first["report"]["sha256"]


@pytest.mark.slow
def test_dynamo_exporter(bundles, tmp_path):
    report = export_onnx(bundles["cgen"], tmp_path / "d.onnx", dynamo=True, check_batches=(1, 37))
    assert report["exporter"] == "dynamo" and report["max_abs_diff"] < 1e-4
    assert set(report["per_batch"]) == {"1", "8", "37"}


def test_export_never_writes_into_a_folder_it_did_not_make(bundles, tmp_path):
    from histosynth.export.onnx import export_bundle

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "model.onnx").write_bytes(b"my own model")
    with pytest.raises(HistosynthError, match="not written by histosynth"):
        export_bundle(bundles["gen"], mine)
    assert (mine / "model.onnx").read_bytes() == b"my own model"
    first = export_bundle(bundles["gen"], tmp_path / "ours")
    assert export_bundle(bundles["gen"], tmp_path / "ours")["cached"] and not first["cached"]
    assert not export_bundle(bundles["gen"], mine, force=True)["cached"]
    assert (mine / "model.onnx").read_bytes() != b"my own model"
