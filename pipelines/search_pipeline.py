"""GA-GAN architecture search pipeline: data -> for each stage (g, then d): create the study, then a fan-out of
workers sharing it (one GPU pod per ``worker_ids`` item; the preset's ``workers`` is for `histosynth search run`)
-> retrain the winner.

The workers coordinate only through the Optuna study at ``storage`` (an RDB URL; on the cluster the PostgreSQL
service of k8s/base/postgres.yaml), exactly as `histosynth search run`'s local worker processes do, so a lost pod
costs at most its running trial (retried by the next worker). Compiles to IR YAML for Kubeflow
(``python -m pipelines.search_pipeline [out.yaml]`` from the project root, or ``histosynth pipeline compile search``)
and runs with ``kfp.local``: ``histosynth pipeline run search -c configs/ga-gan-cpu.yaml``.
"""

import json
import sys
from pathlib import Path

from kfp import dsl

from components import prepare_data, search_prepare, search_retrain, search_worker
from histosynth.search.config import load_search_config
from pipelines.common import ROOT, compile_pipeline, request_gpu

NAME = "histosynth-search"
PRESETS = {"config_yaml": ROOT / "configs" / "ga-gan-search.yaml"}  # what `histosynth pipeline run` passes by default
STAGES = ("g", "d")  # the generator against the fixed D, then the discriminator against the best G


def resolve_config(path, overrides: list[str]) -> str:
    """A search preset with overrides, every setting resolved, as one line of JSON (valid YAML; see
    ``pipelines.common.preset_json``); `histosynth pipeline run` uses it in place of the GAN config loader."""
    return json.dumps(load_search_config(path, overrides).to_dict())


DEFAULT_CONFIG = resolve_config(PRESETS["config_yaml"], [])


@dsl.pipeline(name=NAME, description="Versioned patches -> GA-GAN search (G, then D; parallel GPU workers on one Optuna study) -> retrained winner")
def search_pipeline(
    config_yaml: str = DEFAULT_CONFIG,
    overrides: list = [],  # noqa: B006 - KFP pipeline parameters need literal defaults
    storage: str = "",  # Optuna RDB URL; empty: the preset's, else SQLite in its out_dir (one machine: kfp.local)
    data_repo: str = "",
    data_rev: str = "",
    data_path: str = "data/splits",
    tracking_uri: str = "",
    worker_ids: list = [0, 1],  # noqa: B006 - one GPU worker pod per id and stage
):
    data = prepare_data(data_repo=data_repo, data_rev=data_rev, data_path=data_path)
    data.set_display_name("data: versioned patch splits")
    common = {"splits": data.outputs["splits"], "config_yaml": config_yaml, "overrides": overrides, "storage": storage, "tracking_uri": tracking_uri}

    previous = None
    for stage in STAGES:
        prepare = search_prepare(stage=stage, **common)
        prepare.set_display_name(f"search {stage}: create study")
        if previous is not None:
            prepare.after(previous)  # stage d pins the finished stage g's best generator
        # over a pipeline parameter, not a step's output: kfp.local cannot iterate over a step's output
        with dsl.ParallelFor(worker_ids) as worker_id:
            worker = search_worker(stage=stage, worker_id=worker_id, **common).after(prepare)
            worker.set_display_name(f"search {stage}: worker")
            request_gpu(worker)
        previous = worker

    retrain = search_retrain(**common).after(previous)
    retrain.set_display_name("retrain the winner")
    request_gpu(retrain)


PIPELINE = search_pipeline


def compile_to(path) -> Path:
    return compile_pipeline(PIPELINE, path)


if __name__ == "__main__":
    print(compile_to(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build" / f"{NAME}.yaml"))
