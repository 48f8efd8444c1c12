"""The whole evaluation through evaluate_generator, the CLI and MLflow: PPL/CMMD in the record, TSTR, diagnostics,
reports comparing two runs side by side, and the errors users meet."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from histosynth.errors import HistosynthError
from histosynth.evaluation.suite import evaluate_generator

from .conftest import PLUMBING_TSTR

pytestmark = pytest.mark.unit

FAST_METRICS = {"kid_subsets": 5, "ppl_samples": 16, "ppl_distance": "untrained-vgg16", "ppl_batch": 16}


def cli(*args: str):
    from histosynth.cli import _register, app

    _register()
    return CliRunner().invoke(app, list(args))


def test_full_evaluation_and_side_by_side_report(setup, pixel_extractor, tmp_path):
    from histosynth.evaluation.report import load_records, write_report

    out = tmp_path / "r.jsonl"
    kw = dict(extractor=pixel_extractor, device="cpu", out_jsonl=out, batch_size=32, metric_options=FAST_METRICS, n_fake=30)
    a = evaluate_generator(setup["cond"], setup["splits"], metrics="fid,kid,cmmd,ppl", tstr="on",
                           tstr_options=PLUMBING_TSTR, tsne=True, knn=3, knn_rows=4, report=True, **kw)  # fmt: skip
    assert {"fid", "kid_mean", "cmmd", "ppl"} <= set(a["metrics"]) and a["metrics"]["ppl"] > 0 and a["metrics"]["cmmd"] > 0
    assert "NOT CLIP-CMMD" in a["details"]["cmmd_features"] and any("cmmd is MMD-RBF" in n for n in a["notes"])
    assert a["details"]["ppl_setup"]["distance"]["name"] == "untrained-vgg16" and any("ppl uses the untrained-vgg16" in n for n in a["notes"])
    assert set(a["tstr"]["settings"]) == {"real", "synthetic", "real+synthetic"} and a["tstr"]["folds"] == 2
    art = tmp_path / a["artifacts_dir"]
    assert (art / "tsne.png").is_file() and (art / "knn.png").is_file() and a["diagnostics"]["knn"]["k"] == 3
    md = (art / "report.md").read_text()
    assert "](tsne.png)" in md and "](knn.png)" in md and "TSTR" in md and "Downstream classification" in md
    html = (art / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html

    b = evaluate_generator(setup["uncond"], setup["splits"], metrics="fid,kid,cmmd", tstr="auto", **kw)
    assert "unconditional generator" in b["tstr"]["skipped"] and "diagnostics" not in b
    recs = load_records([str(out)], tmp_path)
    assert [r["model"]["conditional"] for r in recs] == [True, False]
    paths = write_report(recs, tmp_path / "cmp")
    text = paths["markdown"].read_text()
    fid_row = next(line for line in text.splitlines() if line.startswith("| **fid** |"))
    assert f"{a['metrics']['fid']:.4g}" in fid_row and f"{b['metrics']['fid']:.4g}" in fid_row  # side by side
    cmmd_row = next(line for line in text.splitlines() if line.startswith("| **cmmd** |"))
    assert f"{a['metrics']['cmmd']:.4g}" in cmmd_row and f"{b['metrics']['cmmd']:.4g}" in cmmd_row
    ppl_row = next(line for line in text.splitlines() if line.startswith("| **ppl** |"))
    assert ppl_row.rstrip().endswith("| — |")  # b has no ppl
    assert "Skipped: unconditional generator" in text and "comparable with published | **NO** | **NO**" in text
    assert "](../" in text  # images of run a linked relative to the comparison report


def test_mlflow_logging_and_report_from_run_ids(setup, pixel_extractor, tmp_path):
    from histosynth import tracking

    tracking.configure()
    import mlflow

    ids = []
    for bundle in ("cond", "uncond"):
        with mlflow.start_run() as run:
            pass
        ids.append(run.info.run_id)
        evaluate_generator(setup[bundle], setup["splits"], metrics="fid,cmmd", extractor=pixel_extractor, device="cpu", n_fake=20,
                           mlflow_run_id=run.info.run_id, tstr="on" if bundle == "cond" else "off", tstr_options=PLUMBING_TSTR,
                           tsne=True, knn=2, knn_rows=2, artifacts_dir=tmp_path / bundle)  # fmt: skip
    logged = mlflow.get_run(ids[0]).data.metrics
    assert "test/test-pixels/cmmd" in logged and "test/test-pixels/fid/a" in logged and "test/test-pixels/fid_class_mean" in logged and "tstr/synthetic/accuracy_mean" in logged and "tstr/real_synthetic/f1_macro_std" in logged
    res = cli("evaluate", "report", *ids, "--out", str(tmp_path / "rep"))
    assert res.exit_code == 0, res.output
    text = (tmp_path / "rep" / "report.md").read_text()
    assert ids[0][:8] in text and ids[1][:8] in text and "cmmd" in res.output
    links = re.findall(r"\]\(([^)]+\.png)\)", text)
    assert len(links) == 4 and all((tmp_path / "rep" / p).is_file() for p in links)  # t-SNE + kNN of both runs, downloaded from MLflow


def test_cli_options_and_errors(setup, pixel_extractor, tmp_path):
    out = tmp_path / "c.jsonl"
    base = ["evaluate", "--real", str(setup["splits"]), "--extractor", pixel_extractor, "--device", "cpu", "--n", "20", "--set", "kid_subsets=5"]
    ok = cli(*base, "--bundle", str(setup["cond"]), "--metrics", "fid,cmmd", "--knn", "2", "--tsne", "--report", "--out", str(out),
             "--tstr", "on", *sum((["--tstr-set", f"{k}={v}"] for k, v in PLUMBING_TSTR.items()), []))  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "cmmd" in ok.output and "TSTR" in ok.output and "report (html)" in ok.output and "knn:" in ok.output
    assert json.loads(out.read_text())["tstr"]["classifier"]["arch"] == "resnet18"

    bad = cli(*base, "--bundle", str(setup["uncond"]), "--tstr", "on")
    assert isinstance(bad.exception, HistosynthError) and "class-conditional" in str(bad.exception)
    bad = cli(*base, "--bundle", str(setup["cond"]), "--tstr", "maybe")
    assert isinstance(bad.exception, HistosynthError) and "tstr='maybe'" in str(bad.exception)
    bad = cli(*base, "--bundle", str(setup["cond"]), "--tstr", "on", "--tstr-set", "epoch=2")
    assert isinstance(bad.exception, HistosynthError) and "unknown TSTR option" in str(bad.exception)
    bad = cli(*base, "--bundle", str(setup["cond"]), "--tstr-set", "epochs")
    assert isinstance(bad.exception, HistosynthError) and "has no '='" in str(bad.exception)
    bad = cli(*base, "--bundle", str(setup["cond"]), "--metrics", "ppl", "--set", "ppl_distance=lpips")
    assert isinstance(bad.exception, HistosynthError) and "unknown PPL distance" in str(bad.exception)
    bad = cli("evaluate", "--real", str(setup["splits"]))
    assert isinstance(bad.exception, HistosynthError) and "no generator bundle" in str(bad.exception)
    bad = cli("evaluate", "report", "0" * 32)
    assert isinstance(bad.exception, HistosynthError) and "neither a file nor an MLflow run" in str(bad.exception)
    bad = cli("evaluate", "report", str(tmp_path / "missing.jsonl"))
    assert isinstance(bad.exception, HistosynthError) and "does not exist" in str(bad.exception)
    (tmp_path / "junk.jsonl").write_text('{"a": 1}\n')
    bad = cli("evaluate", "report", str(tmp_path / "junk.jsonl"))
    assert isinstance(bad.exception, HistosynthError) and "no evaluation records" in str(bad.exception)


def test_cmmd_on_a_separate_extractor(setup, pixel_extractor):
    """--cmmd-extractor: the same generated images through a second network; the label follows that network."""
    from histosynth.evaluation import features
    from histosynth.evaluation.metrics import cmmd

    def factory(device, weights=None):
        return features.Extractor(name="test-coarse", dim=12, preprocess="avgpool 2x2", device=device, weights_sha256="none",
                                  forward=lambda x: torch.nn.functional.adaptive_avg_pool2d(x / 255.0, 2).flatten(1))  # fmt: skip

    import torch

    features.register_extractor("test-coarse", factory, overwrite=True)
    try:
        kw = dict(metrics="fid,cmmd", device="cpu", n_fake=20)
        sep = evaluate_generator(setup["cond"], setup["splits"], extractor=pixel_extractor, cmmd_extractor="test-coarse", **kw)
        own = evaluate_generator(setup["cond"], setup["splits"], extractor="test-coarse", **kw)
    finally:
        features.EXTRACTORS.pop("test-coarse", None)
    assert sep["metrics"]["cmmd"] == pytest.approx(own["metrics"]["cmmd"], rel=1e-9)  # same images, same features
    assert sep["details"]["cmmd_features"] == cmmd.label("test-coarse") and sep["extractor"]["name"] == pixel_extractor
