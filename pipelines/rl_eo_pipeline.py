"""RL-EO pipeline (the RL-EO paper's method): data -> MFT-SNN pairs -> SNN stage 1 -> SNN stage 2 -> RL-EO GAN -> evaluate ->
register -> export.

Stage 1 fine-tunes the similarity network on whole images (region mosaics), stage 2 on patches from stage 1's
weights; the frozen stage-2 network then scores (real_i, fake_i) pairs for the reward of the GAN's discriminator,
used as ``rl_eo_mode`` says: ``paper`` (as written, no gradient), ``weighted`` or ``soft-label`` (acting on D).
The final SNN is registered in MLflow beside the generator. Compiles to IR YAML for Kubeflow (both SNN stages
and the GAN request a GPU) and runs on a laptop with ``kfp.local``: ``histosynth pipeline run rl_eo``.
"""

import sys
from pathlib import Path

from kfp import dsl

from components import build_pairs, prepare_data, train_gan, train_snn
from pipelines.common import EVAL_CONFIG, ROOT, Outputs, compile_pipeline, evaluate_register_export, preset_json, request_gpu

NAME = "histosynth-rl-eo"
DEFAULT_CONFIG = preset_json("rl-eo-samples.yaml")
DEFAULT_SNN_CONFIG = preset_json("mft-snn-samples.yaml")
PRESETS = {"config_yaml": ROOT / "configs" / "rl-eo-samples.yaml", "snn_config_yaml": ROOT / "configs" / "mft-snn-samples.yaml"}


@dsl.pipeline(name=NAME, description="Versioned patches -> MFT-SNN stage 1 + 2 -> RL-EO GAN -> evaluation -> MLflow registry -> ONNX export")
def rl_eo_pipeline(
    config_yaml: str = DEFAULT_CONFIG,
    overrides: list = [],  # noqa: B006 - KFP pipeline parameters need literal defaults
    snn_config_yaml: str = DEFAULT_SNN_CONFIG,
    snn_overrides: list = [],  # noqa: B006
    rl_eo_mode: str = "paper",
    data_repo: str = "",
    data_rev: str = "",
    data_path: str = "data/splits",
    tracking_uri: str = "",
    model_name: str = "histosynth-rl-eo",
    snn_model_name: str = "histosynth-mft-snn",
    alias: str = "candidate",
    eval_config: dict = EVAL_CONFIG,  # histosynth.evaluation.config.EvalConfig fields
) -> Outputs:
    data = prepare_data(data_repo=data_repo, data_rev=data_rev, data_path=data_path)
    data.set_display_name("data: versioned patch splits")

    pairs = build_pairs(splits=data.outputs["splits"], config_yaml=snn_config_yaml, overrides=snn_overrides)
    pairs.set_display_name("MFT-SNN pairs")

    stage1 = train_snn(pairs=pairs.outputs["pairs"], splits=data.outputs["splits"], config_yaml=snn_config_yaml, overrides=snn_overrides, stage=1, tracking_uri=tracking_uri)
    stage1.set_display_name("MFT-SNN stage 1: whole images")
    request_gpu(stage1)

    stage2 = train_snn(
        pairs=pairs.outputs["pairs"], splits=data.outputs["splits"], config_yaml=snn_config_yaml, overrides=snn_overrides, stage=2,
        tracking_uri=tracking_uri, init_bundle=stage1.outputs["snn"], register_as=snn_model_name,
    )  # fmt: skip
    stage2.set_display_name("MFT-SNN stage 2: patches")
    request_gpu(stage2)

    train = train_gan(splits=data.outputs["splits"], config_yaml=config_yaml, overrides=overrides, tracking_uri=tracking_uri, snn=stage2.outputs["snn"], rl_eo_mode=rl_eo_mode)
    train.set_display_name("train RL-EO GAN")
    request_gpu(train)

    return evaluate_register_export(data, train, tracking_uri=tracking_uri, model_name=model_name, alias=alias, eval_config=eval_config)


PIPELINE = rl_eo_pipeline


def compile_to(path) -> Path:
    return compile_pipeline(PIPELINE, path)


if __name__ == "__main__":
    print(compile_to(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build" / f"{NAME}.yaml"))
