"""Evaluation reports: one Markdown + one HTML file comparing evaluation records side by side.

Records are the JSON objects ``histosynth evaluate`` appends to its JSONL file and logs to MLflow
(``evaluations/*.json`` artifacts of a run). ``load_records`` reads them from JSONL/JSON files or MLflow run ids
(downloading each run's diagnostics images); ``write_report`` writes ``report.md`` (images linked by relative
path) and ``report.html`` (self-contained: images embedded as data URIs).

Side by side, every column names its extractor and whether it is comparable with published numbers; when the
columns differ in extractor, split or sample sizes the report says so above the table, because FID-like
numbers are only comparable at equal settings.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from histosynth.errors import HistosynthError
from histosynth.files.outputs import check_dir

GENERATOR_META = "<meta name='generator' content='histosynth'>"  # marks report.html as ours
TSTR_KEYS = (("accuracy", "accuracy"), ("precision_macro", "precision (macro)"), ("recall_macro", "recall (macro)"), ("f1_macro", "F1 (macro)"))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "—" if v is None else str(v)


def _pm(d: dict[str, float] | None) -> str:
    return "—" if not d else f"{d['mean']:.3f} ± {d['std']:.3f}"


def column_name(rec: dict[str, Any], i: int) -> str:
    who = (rec.get("run_id") or "")[:8] or Path(rec.get("model", {}).get("bundle", f"model{i}")).parent.name or f"model{i}"
    return f"{who} ({rec['extractor']['name']})"


def _rel_or_data(path: str, out_dir: Path, embed: bool) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None
    if embed:
        return "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode()
    return Path(os.path.relpath(p.resolve(), out_dir.resolve())).as_posix()


def markdown(records: list[dict[str, Any]], out_dir: Path, *, embed: bool = False, title: str = "histosynth evaluation report") -> str:
    if not records:
        raise HistosynthError("no evaluation records to report on", "pass JSONL files written by `histosynth evaluate --out` or MLflow run ids with evaluations")
    cols = [column_name(r, i) for i, r in enumerate(records)]
    lines = [f"# {title}", "", f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} from {len(records)} evaluation(s).", ""]
    setting_keys = {k: {(r["extractor"]["name"], r["split"], r["n_real"], r["n_fake"]) for r in records} for k in ("all",)}
    if len(records) > 1 and len(setting_keys["all"]) > 1:
        lines += ["> **Caution:** the columns differ in extractor, split or sample sizes; compare a metric only between columns whose settings agree.", ""]
    head = "| | " + " | ".join(cols) + " |"
    lines += ["## Side by side", "", head, "|---" * (len(cols) + 1) + "|"]

    def row(name: str, values: list[str]) -> None:
        lines.append(f"| {name} | " + " | ".join(values) + " |")

    row("model", [f"{Path(r['model']['bundle']).name} `{r['model']['sha256'][:10]}` ({r['model'].get('arch')}, {r['model'].get('image_size')} px{', conditional' if r['model'].get('conditional') else ''})" for r in records])
    row("extractor", [f"{r['extractor']['name']} ({r['extractor']['dim']}-d)" for r in records])
    row("comparable with published", ["**yes**" if r.get("comparable_with_published") else "**NO**" for r in records])
    row("real split / n_real / n_fake", [f"{r['split']} / {r['n_real']} / {r['n_fake']}" for r in records])
    metric_names: list[str] = []
    for r in records:
        metric_names += [m for m in r["metrics"] if m not in metric_names]
    for m in metric_names:
        row(f"**{m}**", [_fmt(r["metrics"].get(m)) for r in records])
    settings: list[str] = []
    for r in records:
        settings += [s for s in ((r.get("tstr") or {}).get("settings") or {}) if s not in settings]
    for s in settings:
        for key, label in TSTR_KEYS[::3]:  # accuracy and macro F1 side by side; the rest per run below
            row(f"TSTR {s}: {label}", [_pm(((r.get("tstr") or {}).get("settings") or {}).get(s, {}).get(key)) for r in records])
    lines.append("")
    for col, r in zip(cols, records):
        lines += _run_section(col, r, out_dir, embed)
    return "\n".join(lines) + "\n"


def _run_section(col: str, r: dict[str, Any], out_dir: Path, embed: bool) -> list[str]:
    ext = r["extractor"]
    out = [f"## {col}", ""]
    out.append(f"- model: `{r['model']['bundle']}` (sha256 `{r['model']['sha256']}`), classes {', '.join(r['model'].get('classes') or [])}")
    out.append(f"- extractor: **{ext['name']}**, {ext['dim']}-d, weights sha256 `{ext.get('weights_sha256', '')}`; comparable with published: **{'yes' if r.get('comparable_with_published') else 'NO'}**")
    out.append(f"- preprocessing: {ext.get('preprocess', '')}")
    out.append(f"- real: {r['real']['store']} ({r['split']}, {r['n_real']} patches); fake: {r['n_fake']}; seed {r['seed']}; {r.get('timestamp', '')}")
    if r.get("run_id"):
        out.append(f"- MLflow run: `{r['run_id']}`")
    details = r.get("details") or {}
    if "cmmd_features" in details:
        out.append(f"- cmmd: {details['cmmd_features']}")
    if "ppl_setup" in details:
        p = details["ppl_setup"]
        out.append(f"- ppl: distance {p['distance']['name']} ({p['distance'].get('note', '')}), {p['interp']}, eps {p['epsilon']}, {p['samples']} pairs")
    for n in r.get("notes") or []:
        out.append(f"- note: {n}")
    out.append("")
    tstr = r.get("tstr")
    if tstr:
        out += ["### Downstream classification (TSTR)", ""]
        if tstr.get("skipped"):
            out += [f"Skipped: {tstr['skipped']}", ""]
        else:
            c = tstr["classifier"]
            out.append(f"{tstr['protocol']}; folds: {tstr['split']['method']}; classifier {c.get('arch')} (init {c.get('init')}, {c.get('trainable_layers')}/{c.get('total_layers')} layers trainable, head {c.get('head_hidden')}), {tstr['config']['epochs']} epochs, lr {tstr['config']['lr']}.")
            out.append("")
            classes = tstr["classes"]
            out.append("| setting | " + " | ".join(label for _, label in TSTR_KEYS) + " | " + " | ".join(f"F1 {c}" for c in classes) + " |")
            out.append("|---" * (1 + len(TSTR_KEYS) + len(classes)) + "|")
            for s, res in tstr["settings"].items():
                per = [_pm(res["f1_per_class"].get(c)) for c in classes]
                out.append(f"| {s} | " + " | ".join(_pm(res[k]) for k, _ in TSTR_KEYS) + " | " + " | ".join(per) + " |")
            for n in tstr["split"].get("notes", []):
                out.append(f"\nnote: {n}")
            out.append("")
    diag = r.get("diagnostics") or {}
    if diag:
        out += ["### Diagnostics", ""]
        if "tsne" in diag:
            src = _rel_or_data(diag["tsne"]["path"], out_dir, embed)
            out.append(f"t-SNE of {ext['name']} features (PCA to {diag['tsne']['pca_dims']} dims first, perplexity {diag['tsne']['perplexity']:.0f}):")
            out += ["", f"![t-SNE real vs synthetic]({src})" if src else f"(image missing: {diag['tsne']['path']})", ""]
        if "knn" in diag:
            k = diag["knn"]
            src = _rel_or_data(k["path"], out_dir, embed)
            out.append(f"Nearest real neighbours (K={k['k']}, {k['order']} {k['rows']} synthetic samples, {k.get('features', ext['name'])} feature distance): synthetic top-1 distance min {k['top1_min']:.4g}, median {k['top1_median']:.4g}; real-real nearest-neighbour median {k.get('real_nn_median', float('nan')):.4g}; share of synthetic samples closer to a real patch than 95% of real patches are to each other: {k.get('share_closer_than_real_p5', float('nan')):.3f}.")
            out += ["", f"![nearest real neighbours]({src})" if src else f"(image missing: {k['path']})", ""]
    return out


def html(md_text: str, title: str = "histosynth evaluation report") -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(md_text)
    style = "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}img{max-width:100%}blockquote{background:#fff4e5;border-left:4px solid #f90;margin:0;padding:.5em 1em}"
    return f"<!doctype html>\n<html><head><meta charset='utf-8'>{GENERATOR_META}<title>{title}</title><style>{style}</style></head><body>\n{body}</body></html>\n"


def check_report_dir(out_dir: str | Path, force: bool = False, flag: str = "--out") -> Path:
    """Refuse a folder that is not a report this tool wrote (its report.html carries GENERATOR_META)."""
    return check_dir(out_dir, marker="report.html", names=("report.md", "*.png", "mlflow"), ours=lambda p: GENERATOR_META in p.read_text(errors="replace")[:1000], force=force, flag=flag)


def write_report(records: list[dict[str, Any]], out_dir: str | Path, *, title: str = "histosynth evaluation report") -> dict[str, Path]:
    """-> {"markdown": out_dir/report.md, "html": out_dir/report.html}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(markdown(records, out, title=title))
    html_path.write_text(html(markdown(records, out, embed=True, title=title), title))
    return {"markdown": md_path, "html": html_path}


def _read_json_records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    try:
        recs = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix != ".json" else [json.loads(text)]
    except json.JSONDecodeError as e:
        raise HistosynthError(f"'{path}' is not JSON lines of evaluation records ({e})", "pass the --out file of histosynth evaluate") from e
    bad = [r for r in recs if not isinstance(r, dict) or "metrics" not in r or "extractor" not in r]
    if bad or not recs:
        raise HistosynthError(f"'{path}' holds no evaluation records", "pass the --out file of histosynth evaluate")
    return recs


def _from_mlflow(run_id: str, dest: Path, tracking_uri: str) -> list[dict[str, Any]]:
    from histosynth import tracking

    tracking.configure(tracking_uri)
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        client.get_run(run_id)
    except Exception as e:  # noqa: BLE001 - unknown id, unreachable server
        raise HistosynthError(f"'{run_id}' is neither a file nor an MLflow run on {tracking.configure(tracking_uri)} ({e.__class__.__name__})", "pass a JSONL file from histosynth evaluate --out, or a run id with evaluations (MLFLOW_TRACKING_URI)") from e
    arts = client.list_artifacts(run_id, "evaluations")
    jsons = sorted(a.path for a in arts if not a.is_dir and a.path.endswith(".json"))
    if not jsons:
        raise HistosynthError(f"MLflow run '{run_id}' has no evaluations", "run histosynth evaluate --run-id RUN_ID first")
    local = Path(client.download_artifacts(run_id, "evaluations", str(dest)))
    latest: dict[tuple, dict[str, Any]] = {}
    for j in jsons:
        rec = json.loads((local.parent / j).read_text())
        files_dir = local / Path(j).stem  # diagnostics of this evaluation, logged beside its JSON
        for d in (rec.get("diagnostics") or {}).values():
            if d.get("path"):
                d["path"] = str(files_dir / Path(d["path"]).name)
        latest[(rec["split"], rec["extractor"]["name"])] = rec  # sorted by timestamp: the newest wins
    return list(latest.values())


def load_records(sources: list[str], dest: str | Path, tracking_uri: str = "") -> list[dict[str, Any]]:
    """Records from JSONL/JSON files (every record) and MLflow run ids (the newest per split and extractor)."""
    records: list[dict[str, Any]] = []
    for src in sources:
        p = Path(src)
        if p.is_file():
            records += _read_json_records(p)
        elif p.suffix in (".jsonl", ".json") or os.sep in src:
            raise HistosynthError(f"'{src}' does not exist", "pass an existing JSONL file or an MLflow run id")
        else:
            records += _from_mlflow(src, Path(dest) / "mlflow" / src, tracking_uri)
    return records
