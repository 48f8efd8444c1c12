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
    n_fake: int = 0,
    extractor: str = "inception-fid",
    metrics: str = "fid,kid,precision_recall,density_coverage",
    metric_options: str = "",
    tstr: str = "auto",
    tstr_options: str = "",
    run_diagnostics: bool = True,
):
    """Metrics, TSTR, t-SNE/kNN diagnostics and an HTML report of the generator against the test split, logged to the run."""
    import shutil

    from histosynth.stages import evaluate_stage

    record = evaluate_stage(
        generator.path, splits.path, run_id, tracking_uri, results.path, n_fake=n_fake, extractor=extractor, metrics=metrics,
        metric_options=metric_options, tstr=tstr, tstr_options=tstr_options, diagnostics=run_diagnostics, artifacts_dir=diagnostics.path,
    )  # fmt: skip
    for key, value in record["metrics"].items():
        if isinstance(value, (int, float)):
            eval_metrics.log_metric(key, float(value))
    for setting, res in ((record.get("tstr") or {}).get("settings") or {}).items():
        eval_metrics.log_metric(f"tstr_{setting.replace('+', '_')}_accuracy", float(res["accuracy"]["mean"]))
    shutil.copyfile(record["report"]["html"], report.path)
    results.metadata.update({"extractor": extractor, "comparable": record.get("comparable_with_published", False)})
