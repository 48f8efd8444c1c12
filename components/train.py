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
    nodes: int = 1,
    nproc_per_node: int = 1,
) -> NamedTuple("TrainOutputs", [("run_id", str)]):
    """Train the GAN described by `config_yaml` (a preset's text) on the splits; tracked in MLflow.
    With `snn` (a trained MFT-SNN) the discriminator gets the RL-EO similarity reward, used as `rl_eo_mode`
    says (paper, weighted, soft-label; empty: the preset's).
    ``nodes`` x ``nproc_per_node`` processes train one model with DDP: on a cluster (more than one process) the step
    submits a PyTorchJob (components.pytorchjob; its pods read the splits from the histosynth-data volume) and
    waits for it; elsewhere it runs torchrun on this machine (one process: in this process)."""
    import os
    from collections import namedtuple

    from histosynth.errors import ConfigError
    from histosynth.stages import train_stage

    overrides = [str(o) for o in overrides]
    if os.environ.get("KUBERNETES_SERVICE_HOST") and nodes * nproc_per_node > 1:
        from components.images import GPU_IMAGE
        from components.pytorchjob import train_on_cluster

        cluster_overrides = [*overrides, *([f"rl_eo.mode={rl_eo_mode}"] if rl_eo_mode else [])]
        if snn is not None:
            raise ConfigError("RL-EO (an SNN input) is not supported in a PyTorchJob yet", "train RL-EO with nodes=1")
        result = train_on_cluster(config_yaml, cluster_overrides, tracking_uri, generator.path, nodes=nodes, nproc_per_node=nproc_per_node, image=GPU_IMAGE)
    elif nodes > 1:
        raise ConfigError(f"nodes={nodes} needs a Kubernetes cluster (the step submits a PyTorchJob)", "run on Kubeflow, or use nodes=1 with nproc_per_node processes here")
    else:
        result = train_stage(splits.path, config_yaml, overrides, tracking_uri, generator.path, snn=snn.path if snn is not None else "", rl_eo_mode=rl_eo_mode, nproc=nproc_per_node)
    generator.metadata.update({"run_id": result["run_id"], "device": result["device"], "steps": result["steps"]})
    for key, value in result["metrics"].items():
        train_metrics.log_metric(key, float(value))
    train_metrics.log_metric("wall_s", float(result["wall_s"]))
    return namedtuple("TrainOutputs", ["run_id"])(result["run_id"])
