from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from components.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def evaluate_gan(
    generator: Input[Model],
    splits: Input[Dataset],
    run_id: str,
    tracking_uri: str,
    eval_metrics: Output[Metrics],
    results: Output[Artifact],
    diagnostics: Output[Artifact],
    report: Output[HTML],
    eval_config: dict = {},  # noqa: B006 - KFP parameters need literal defaults; {}: the stage's defaults
):
    """Metrics, TSTR, t-SNE/kNN diagnostics and an HTML report of the generator against a real split, logged to the run.
    ``eval_config``: ``EvalConfig`` fields (histosynth.evaluation.config) over that module's ``STAGE_DEFAULTS``."""
    import shutil

    from histosynth.stages import evaluate_stage

    record = evaluate_stage(generator.path, splits.path, run_id, tracking_uri, results.path, eval_config, artifacts_dir=diagnostics.path)
    for key, value in record["metrics"].items():
        if isinstance(value, (int, float)):
            eval_metrics.log_metric(key, float(value))
    for setting, res in ((record.get("tstr") or {}).get("settings") or {}).items():
        eval_metrics.log_metric(f"tstr_{setting.replace('+', '_')}_accuracy", float(res["accuracy"]["mean"]))
    shutil.copyfile(record["report"]["html"], report.path)
    results.metadata.update({"extractor": record["extractor"]["name"], "comparable": record.get("comparable_with_published", False)})
