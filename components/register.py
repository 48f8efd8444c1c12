from typing import NamedTuple

from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def register_gan(run_id: str, model_name: str, alias: str, tracking_uri: str) -> NamedTuple("RegisterOutputs", [("version", str)]):
    """Register the run's generator as a new version of `model_name` in the MLflow registry."""
    from collections import namedtuple

    from histosynth.stages import register_stage

    info = register_stage(run_id, model_name, alias, tracking_uri)
    return namedtuple("RegisterOutputs", ["version"])(str(info["version"]))
