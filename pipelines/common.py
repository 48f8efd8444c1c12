"""Pieces every pipeline shares: the GPU request and the evaluate -> register -> export tail.

``components`` and ``pipelines`` are packages of the project root: run from there (``python -m
pipelines.train_pipeline``), through ``histosynth pipeline`` (which imports them from the project root), or under
pytest (``pythonpath`` in pyproject.toml).
"""

import json
from pathlib import Path
from typing import NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl import Artifact, Dataset, Metrics, Model

from components import evaluate_gan, export_onnx, register_gan
from histosynth.config import resolved_preset
from histosynth.evaluation.config import STAGE_DEFAULTS, EvalConfig

ROOT = Path(__file__).resolve().parents[1]
GPU_RESOURCE = "nvidia.com/gpu"
GPU_NODE_LABEL = ("nvidia.com/gpu.present", "true")  # set by NVIDIA's GPU feature discovery
# The evaluate step's default options (the ``eval_config`` pipeline parameter): the stage's defaults with a cheap
# downstream TSTR for local runs (~2 min on 2 busy CPU cores, seconds on a GPU; only for class-conditional generators):
# ResNet-18 from scratch at 32 px on 300 real patches, 2 epochs, 3 folds. The paper's set-up is "tstr_options": {}.
EVAL_TSTR_OPTIONS = {"backbone": "resnet18", "init": "random", "trainable_layers": -1, "head_hidden": 0, "epochs": 2, "folds": 3, "lr": 1e-3, "batch_size": 64, "input_size": 32, "max_real": 300}
EVAL_CONFIG = EvalConfig.from_dict({"tstr_options": EVAL_TSTR_OPTIONS}, base=STAGE_DEFAULTS).to_dict()

Outputs = NamedTuple("Outputs", [("generator", Model), ("onnx_model", Model), ("splits", Dataset), ("evaluation", Artifact), ("metrics", Metrics)])


def preset_json(name: str) -> str:
    """A preset of ``configs/``, resolved (every setting, no ``extends:``), as one line of JSON (valid YAML): KFP
    copies defaults unescaped into the IR's header comment, so a multi-line default would make the compiled file
    unparseable."""
    return json.dumps(resolved_preset(ROOT / "configs" / name))


def compile_pipeline(pipeline, path) -> Path:
    """Write ``pipeline``'s IR YAML (for upload in the Kubeflow UI) to ``path``."""
    from kfp import compiler

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline, str(path))
    return path


def request_gpu(task: dsl.PipelineTask, count: int = 1) -> dsl.PipelineTask:
    """One NVIDIA GPU, scheduled on GPU nodes and tolerating their taint (ignored by kfp.local)."""
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(count)
    task.set_memory_limit("32G").set_cpu_limit("8")
    kubernetes.add_node_selector(task, label_key=GPU_NODE_LABEL[0], label_value=GPU_NODE_LABEL[1])
    kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
    return task


def evaluate_register_export(data: dsl.PipelineTask, train: dsl.PipelineTask, *, tracking_uri, model_name, alias, eval_config) -> Outputs:
    """Evaluate the trained generator, register it only once evaluated, export the registered version to ONNX."""
    evaluate = evaluate_gan(
        generator=train.outputs["generator"],
        splits=data.outputs["splits"],
        run_id=train.outputs["run_id"],
        tracking_uri=tracking_uri,
        eval_config=eval_config,
    )
    evaluate.set_display_name("evaluate")

    register = register_gan(run_id=train.outputs["run_id"], model_name=model_name, alias=alias, tracking_uri=tracking_uri)
    register.set_display_name("register in MLflow").after(evaluate)  # only evaluated models are registered

    export = export_onnx(model_name=model_name, version=register.outputs["version"], tracking_uri=tracking_uri)
    export.set_display_name("export ONNX")

    return Outputs(
        generator=train.outputs["generator"],
        onnx_model=export.outputs["onnx_model"],
        splits=data.outputs["splits"],
        evaluation=evaluate.outputs["results"],
        metrics=evaluate.outputs["eval_metrics"],
    )
