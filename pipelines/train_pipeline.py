"""Training pipeline: data -> train -> evaluate -> register -> export.

Compiles to IR YAML for the Kubeflow UI (the training step asks for an NVIDIA GPU on a GPU node) and runs
on a laptop with ``kfp.local`` on the same code: ``histosynth pipeline run train``, or ``python -m pipelines.train_pipeline`` (from the
project root) to compile it.
"""

import sys
from pathlib import Path

from kfp import dsl

from components import prepare_data, train_gan
from pipelines.common import EVAL_CONFIG, ROOT, Outputs, compile_pipeline, evaluate_register_export, preset_json, request_gpu

NAME = "histosynth-train"
DEFAULT_CONFIG = preset_json("dcgan-samples.yaml")
PRESETS = {"config_yaml": ROOT / "configs" / "dcgan-samples.yaml"}  # what `histosynth pipeline run` passes by default


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
    eval_config: dict = EVAL_CONFIG,  # histosynth.evaluation.config.EvalConfig fields
    nodes: int = 1,  # > 1 on a cluster: the train step submits a PyTorchJob (components.pytorchjob)
    nproc_per_node: int = 1,  # DDP processes (GPUs) per node; locally > 1 runs torchrun
) -> Outputs:
    data = prepare_data(data_repo=data_repo, data_rev=data_rev, data_path=data_path)
    data.set_display_name("data: versioned patch splits")

    train = train_gan(splits=data.outputs["splits"], config_yaml=config_yaml, overrides=overrides, tracking_uri=tracking_uri, nodes=nodes, nproc_per_node=nproc_per_node)
    train.set_display_name("train GAN")
    request_gpu(train)

    return evaluate_register_export(data, train, tracking_uri=tracking_uri, model_name=model_name, alias=alias, eval_config=eval_config)


PIPELINE = train_pipeline


def compile_to(path) -> Path:
    return compile_pipeline(PIPELINE, path)


if __name__ == "__main__":
    print(compile_to(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build" / f"{NAME}.yaml"))
