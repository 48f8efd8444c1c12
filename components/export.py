from kfp import dsl
from kfp.dsl import Metrics, Model, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def export_onnx(model_name: str, version: str, tracking_uri: str, onnx_model: Output[Model], parity: Output[Metrics]):
    """ONNX export of a registered version with a PyTorch parity check; logged to the version's run."""
    from histosynth.stages import export_stage

    report = export_stage(model_name, version, tracking_uri, onnx_model.path)
    onnx_model.metadata.update({"model_name": model_name, "version": version, "onnx_path": report["onnx_path"]})
    for key, value in report["report"].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parity.log_metric(key, float(value))
