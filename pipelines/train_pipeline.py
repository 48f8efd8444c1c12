"""Training pipeline: data -> train -> evaluate -> register -> export.

Compiles to IR YAML for the Kubeflow UI (the training step asks for an NVIDIA GPU on a GPU node) and runs
on a laptop with ``kfp.local`` on the same code: ``histosynth pipeline run train`` or ``python -m`` this file.
"""


import json
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # components/ lives beside pipelines/
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from kfp import compiler, dsl, kubernetes  # noqa: E402
from kfp.dsl import Artifact, Dataset, Metrics, Model  # noqa: E402

from components import evaluate_gan, export_onnx, prepare_data, register_gan, train_gan  # noqa: E402

NAME = "histosynth-train"
DEFAULT_PRESET = ROOT / "configs" / "dcgan-samples.yaml"
# One line of JSON (valid YAML): KFP copies defaults unescaped into the IR's header comment, so a multi-line
# default would make the compiled file unparseable.
DEFAULT_CONFIG = json.dumps(yaml.safe_load(DEFAULT_PRESET.read_text()))
GPU_RESOURCE = "nvidia.com/gpu"
GPU_NODE_LABEL = ("nvidia.com/gpu.present", "true")  # set by NVIDIA's GPU feature discovery


def request_gpu(task: dsl.PipelineTask, count: int = 1) -> dsl.PipelineTask:
    """One NVIDIA GPU, scheduled on GPU nodes and tolerating their taint (ignored by kfp.local)."""
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(count)
    task.set_memory_limit("32G").set_cpu_limit("8")
    kubernetes.add_node_selector(task, label_key=GPU_NODE_LABEL[0], label_value=GPU_NODE_LABEL[1])
    kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
    return task


@dsl.pipeline(name=NAME, description="Versioned patches -> GAN training -> evaluation -> MLflow registry -> ONNX export")
def train_pipeline(
    config_yaml: str = DEFAULT_CONFIG,
    overrides: list = [],  # noqa: B006 - KFP pipeline parameters need literal defaults
    data_repo: str = "",
    data_rev: str = "",
    data_path: str = "data/splits",
    tracking_uri: str = "",
    model_name: str = "histosynth-dcgan",
    alias: str = "candidate",
    eval_n_fake: int = 0,
    eval_extractor: str = "inception-fid",
    eval_metrics: str = "fid,kid,precision_recall,density_coverage",
) -> NamedTuple("Outputs", [("generator", Model), ("onnx_model", Model), ("splits", Dataset), ("evaluation", Artifact), ("metrics", Metrics)]):
    data = prepare_data(data_repo=data_repo, data_rev=data_rev, data_path=data_path)
    data.set_display_name("data: versioned patch splits")

    train = train_gan(splits=data.outputs["splits"], config_yaml=config_yaml, overrides=overrides, tracking_uri=tracking_uri)
    train.set_display_name("train GAN")
    request_gpu(train)

    evaluate = evaluate_gan(
        generator=train.outputs["generator"],
        splits=data.outputs["splits"],
        run_id=train.outputs["run_id"],
        tracking_uri=tracking_uri,
        n_fake=eval_n_fake,
        extractor=eval_extractor,
        metrics=eval_metrics,
    )
    evaluate.set_display_name("evaluate")

    register = register_gan(run_id=train.outputs["run_id"], model_name=model_name, alias=alias, tracking_uri=tracking_uri)
    register.set_display_name("register in MLflow").after(evaluate)  # only evaluated models are registered

    export = export_onnx(model_name=model_name, version=register.outputs["version"], tracking_uri=tracking_uri)
    export.set_display_name("export ONNX")

    Outputs = NamedTuple("Outputs", [("generator", Model), ("onnx_model", Model), ("splits", Dataset), ("evaluation", Artifact), ("metrics", Metrics)])
    return Outputs(
        generator=train.outputs["generator"],
        onnx_model=export.outputs["onnx_model"],
        splits=data.outputs["splits"],
        evaluation=evaluate.outputs["results"],
        metrics=evaluate.outputs["eval_metrics"],
    )


PIPELINE = train_pipeline


def compile_to(path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(train_pipeline, str(path))
    return path


if __name__ == "__main__":
    print(compile_to(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build" / f"{NAME}.yaml"))
