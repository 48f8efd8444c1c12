"""Triton model repositories: both variants' config.pbtxt parsed with model_config_pb2 and checked field by field."""

from __future__ import annotations

import json

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from histosynth.errors import HistosynthError
from histosynth.serving import DynamicBatching, build_repository, model_config, sanitize_model_name
from histosynth.serving.repository import MODEL_PY

pytestmark = pytest.mark.unit


def _parse(path):
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def _build(onnx_models, tmp_path, variant, kind="cgen"):
    return build_repository(
        onnx_models[kind], tmp_path / variant, "dcgan-bach", 7, variant=variant, max_batch_size=32,
        dynamic_batching=DynamicBatching(preferred_batch_sizes=(8, 32, 64), max_queue_delay_us=500), instance_count=2,
    )


def test_production_config(onnx_models, tmp_path):
    model_dir = _build(onnx_models, tmp_path, "production")
    assert sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*")) == ["7", "7/model.onnx", "config.pbtxt"]
    assert (model_dir / "7" / "model.onnx").read_bytes() == onnx_models["cgen"].read_bytes()
    cfg = _parse(model_dir / "config.pbtxt")
    assert cfg.name == "dcgan-bach"
    assert cfg.platform == "onnxruntime_onnx" and cfg.backend == ""
    assert cfg.default_model_filename == "model.onnx"
    assert cfg.max_batch_size == 32
    assert list(cfg.version_policy.specific.versions) == [7]
    assert [(g.kind, g.count) for g in cfg.instance_group] == [(mc.ModelInstanceGroup.KIND_GPU, 2)]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [8, 32]  # 64 > max_batch_size is dropped
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    ins = {i.name: i for i in cfg.input}
    assert set(ins) == {"z", "class_id"}
    assert ins["z"].data_type == mc.TYPE_FP32 and list(ins["z"].dims) == [16] and not ins["z"].HasField("reshape")
    assert ins["class_id"].data_type == mc.TYPE_INT64 and list(ins["class_id"].dims) == [1]
    assert ins["class_id"].HasField("reshape") and list(ins["class_id"].reshape.shape) == []  # (B, 1) -> the ONNX's (B,)
    outs = {o.name: o for o in cfg.output}
    assert outs["images_uint8"].data_type == mc.TYPE_UINT8 and list(outs["images_uint8"].dims) == [32, 32, 3]
    assert outs["images"].data_type == mc.TYPE_FP32 and list(outs["images"].dims) == [3, 32, 32]
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    assert json.loads(params["classes"]) == ["benign", "invasive", "normal"]
    assert params["latent_dim"] == "16" and params["image_size"] == "32" and params["num_classes"] == "3"
    assert "onnx_file" not in params  # python-backend parameters stay out of the production config


def test_local_config(onnx_models, tmp_path):
    model_dir = _build(onnx_models, tmp_path, "local")
    assert sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*")) == ["7", "7/model.onnx", "7/model.py", "config.pbtxt"]
    assert (model_dir / "7" / "model.py").read_text() == MODEL_PY.read_text()
    cfg = _parse(model_dir / "config.pbtxt")
    assert cfg.backend == "python" and cfg.platform == ""
    assert [(g.kind, g.count) for g in cfg.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 2)]
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    assert params["onnx_file"] == "model.onnx" and params["device"] == "cpu" and params["intra_op_threads"] == "0"


def test_variants_share_one_description(onnx_models, tmp_path):
    """Apart from the runtime fields, the two configs are the same message."""
    prod = _parse(_build(onnx_models, tmp_path, "production") / "config.pbtxt")
    local = _parse(_build(onnx_models, tmp_path, "local") / "config.pbtxt")
    for cfg in (prod, local):
        for f in ("platform", "backend", "default_model_filename", "instance_group"):
            cfg.ClearField(f)
        for k in ("onnx_file", "device", "intra_op_threads"):
            if k in cfg.parameters:
                del cfg.parameters[k]
    assert prod == local


def test_unconditional_has_no_class_input(onnx_models, tmp_path):
    cfg = _parse(build_repository(onnx_models["gen"], tmp_path, "g", 1) / "config.pbtxt")
    assert [i.name for i in cfg.input] == ["z"]
    assert cfg.parameters["classes"].string_value == "[]"
    assert cfg.max_batch_size == 64 and cfg.dynamic_batching.max_queue_delay_microseconds == 2000


def test_rebuild_replaces_model_and_keeps_others(onnx_models, tmp_path):
    build_repository(onnx_models["gen"], tmp_path, "a", 1)
    build_repository(onnx_models["gen"], tmp_path, "b", 1)
    build_repository(onnx_models["cgen"], tmp_path, "a", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no staging folders left behind
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["2", "config.pbtxt"]


def test_no_dynamic_batching(onnx_models, tmp_path):
    cfg = _parse(build_repository(onnx_models["gen"], tmp_path, "g", 1, dynamic_batching=None) / "config.pbtxt")
    assert not cfg.HasField("dynamic_batching")


def test_bad_arguments(onnx_models, tmp_path):
    with pytest.raises(HistosynthError, match="unknown repository variant"):
        model_config("g", 1, [], [], variant="cloud")  # type: ignore[arg-type]
    with pytest.raises(HistosynthError, match="max_batch_size"):
        model_config("g", 1, [], [], max_batch_size=0)
    with pytest.raises(HistosynthError, match="versions are integers"):
        model_config("g", 0, [], [])
    with pytest.raises(HistosynthError, match="not found"):
        build_repository(tmp_path / "missing.onnx", tmp_path, "g")
    assert sanitize_model_name("team/dcgan bach") == "team_dcgan_bach"


def test_a_user_folder_named_like_the_model_is_never_replaced(onnx_models, tmp_path):
    mine = tmp_path / "repo" / "gen"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(HistosynthError, match="not a Triton model folder"):
        build_repository(onnx_models["gen"], tmp_path / "repo", "gen")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(HistosynthError, match="is a file, not a folder"):
        build_repository(onnx_models["gen"], tmp_path / "file", "gen")
    built = build_repository(onnx_models["gen"], tmp_path / "repo2", "gen")
    assert build_repository(onnx_models["gen"], tmp_path / "repo2", "gen") == built  # ours: rebuilt in place
