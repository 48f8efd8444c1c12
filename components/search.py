from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.images import CPU_IMAGE, GPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def search_prepare(splits: Input[Dataset], config_yaml: str, overrides: list, stage: str, storage: str, tracking_uri: str) -> str:
    """Create `stage`'s study in `storage` (empty: the preset's, else SQLite in its out_dir) before its workers start;
    -> the study's name."""
    from histosynth.stages import search_prepare_stage

    return search_prepare_stage(splits.path, config_yaml, [str(o) for o in overrides], stage, storage, tracking_uri)["study"]


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def search_worker(
    splits: Input[Dataset], config_yaml: str, overrides: list, stage: str, worker_id: int, storage: str, tracking_uri: str
) -> NamedTuple("WorkerOutputs", [("ran", int)]):
    """One search worker: evaluates `stage`'s candidates from the shared study until the stage is done."""
    from collections import namedtuple

    from histosynth.stages import search_worker_stage

    info = search_worker_stage(splits.path, config_yaml, [str(o) for o in overrides], stage, int(worker_id), storage, tracking_uri)
    return namedtuple("WorkerOutputs", ["ran"])(int(info["ran"]))


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def search_retrain(
    splits: Input[Dataset], config_yaml: str, overrides: list, storage: str, tracking_uri: str, winner: Output[Model], retrain_metrics: Output[Metrics]
) -> NamedTuple("RetrainOutputs", [("run_id", str), ("g_genotype", str), ("d_genotype", str)]):
    """Retrain the searched generator/discriminator pair from scratch; `winner` holds its generator bundle (generator.pt)."""
    from collections import namedtuple

    from histosynth.stages import search_retrain_stage

    result = search_retrain_stage(splits.path, config_yaml, [str(o) for o in overrides], winner.path, storage, tracking_uri)
    winner.metadata.update({"run_id": result["run_id"], "g_genotype": result["g_genotype"], "d_genotype": result["d_genotype"]})
    for key, value in result.items():
        if isinstance(value, (int, float)) and value == value:  # skip NaN
            retrain_metrics.log_metric(key, float(value))
    return namedtuple("RetrainOutputs", ["run_id", "g_genotype", "d_genotype"])(result["run_id"], result["g_genotype"], result["d_genotype"])
