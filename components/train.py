from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def train_gan(
    splits: Input[Dataset],
    config_yaml: str,
    overrides: list,
    tracking_uri: str,
    generator: Output[Model],
    train_metrics: Output[Metrics],
    snn: Input[Model] = None,
    rl_eo_mode: str = "",
) -> NamedTuple("TrainOutputs", [("run_id", str)]):
    """Train the GAN described by `config_yaml` (a preset's text) on the splits; tracked in MLflow.
    With `snn` (a trained MFT-SNN) the discriminator gets the RL-EO similarity reward, used as `rl_eo_mode`
    says (paper, weighted, soft-label; empty: the preset's)."""
    from collections import namedtuple

    from histosynth.stages import train_stage

    result = train_stage(splits.path, config_yaml, [str(o) for o in overrides], tracking_uri, generator.path, snn=snn.path if snn is not None else "", rl_eo_mode=rl_eo_mode)
    generator.metadata.update({"run_id": result["run_id"], "device": result["device"], "steps": result["steps"]})
    for key, value in result["metrics"].items():
        train_metrics.log_metric(key, float(value))
    train_metrics.log_metric("wall_s", float(result["wall_s"]))
    return namedtuple("TrainOutputs", ["run_id"])(result["run_id"])
