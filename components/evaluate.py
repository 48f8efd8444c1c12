from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def evaluate_gan(
    generator: Input[Model],
    splits: Input[Dataset],
    run_id: str,
    tracking_uri: str,
    eval_metrics: Output[Metrics],
    results: Output[Artifact],
    n_fake: int = 0,
    extractor: str = "inception-fid",
    metrics: str = "fid,kid,precision_recall,density_coverage",
):
    """FID/KID/precision-recall/density-coverage of the generator against the test split, logged to the run."""
    from histosynth.stages import evaluate_stage

    record = evaluate_stage(generator.path, splits.path, run_id, tracking_uri, results.path, n_fake=n_fake, extractor=extractor, metrics=metrics)
    for key, value in record["metrics"].items():
        if isinstance(value, (int, float)):
            eval_metrics.log_metric(key, float(value))
    results.metadata.update({"extractor": extractor, "comparable": record.get("comparable_with_published", False)})
