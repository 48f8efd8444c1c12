from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.images import CPU_IMAGE, GPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def build_pairs(splits: Input[Dataset], config_yaml: str, overrides: list, pairs: Output[Dataset]) -> NamedTuple("PairsOutputs", [("train_pairs", int)]):
    """MFT-SNN pairs (one similar and two dissimilar levels, augmented) from the split stores."""
    from collections import namedtuple

    from histosynth.stages import pairs_stage

    counts = pairs_stage(splits.path, pairs.path, config_yaml, [str(o) for o in overrides])
    pairs.metadata.update({"counts": counts})
    return namedtuple("PairsOutputs", ["train_pairs"])(int(counts["train"]["patch"]))


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def train_snn(
    pairs: Input[Dataset],
    splits: Input[Dataset],
    config_yaml: str,
    overrides: list,
    stage: int,
    tracking_uri: str,
    snn: Output[Model],
    snn_metrics: Output[Metrics],
    init_bundle: Input[Model] = None,
    register_as: str = "",
) -> NamedTuple("SnnOutputs", [("run_id", str), ("init", str)]):
    """Train MFT-SNN stage 1 (whole images) or 2 (patches, from `init_bundle`: stage 1's `snn` output).
    Stage 1 leaves `init_bundle` unset. `register_as`: register the trained network under this MLflow model name."""
    from collections import namedtuple

    from histosynth.stages import train_snn_stage

    init = init_bundle.path if int(stage) == 2 and init_bundle is not None else ""
    extra = [f"tracking.register_as={register_as}"] if register_as else []
    result = train_snn_stage(pairs.path, splits.path, config_yaml, [*map(str, overrides), *extra], int(stage), init, tracking_uri, snn.path)
    snn.metadata.update({"run_id": result["run_id"], "stage": result["stage"], "init": result["init"].get("init", "?"), "init_label": result["init"].get("label", "")})
    if result.get("registered"):
        snn.metadata.update({"registered_name": result["registered"]["name"], "registered_version": str(result["registered"]["version"])})
    for key, value in result["val"].items():
        if value == value:  # skip NaN
            snn_metrics.log_metric(f"val_{key}", float(value))
    snn_metrics.log_metric("wall_s", float(result["wall_s"]))
    return namedtuple("SnnOutputs", ["run_id", "init"])(result["run_id"], str(result["init"].get("init", "?")))
