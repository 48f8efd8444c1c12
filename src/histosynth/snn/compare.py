"""Evidence for the paper's claim that multistage fine-tuning beats single-stage: pair classification on
held-out pairs for (a) stage 1 only, (b) stage 1 + 2, (c) single-stage (patches only, same total epochs).

Each variant is trained with the same config, seed, init and pairs; each is scored on the held-out patch pairs
(``tools.eval_split``, default test) with the decision threshold chosen on the validation pairs at the end
of its own training (stored in its bundle), so the test pairs never tune anything. ROC-AUC needs no
threshold. Results go to ``compare.json`` / ``compare.md`` and to one MLflow parent run with the three
training runs nested under it.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from histosynth import defaults, tracking
from histosynth.device import resolve_device
from histosynth.config.snn import SnnConfig, validate
from histosynth.snn.mft_snn import load_bundle
from histosynth.snn.pairs import PairSet
from histosynth.snn.score import pair_metrics, pair_similarities
from histosynth.snn.train import train_snn

VARIANTS = (("stage1", "stage 1 only"), ("stage1+2", "stage 1 + stage 2 (multistage)"), ("single", "single-stage (patches only)"))


def evaluate_bundle(bundle: str | Path, pairs_dir: str, split: str, splits_root: str = "", device: str = "auto", threshold: float | None = None) -> dict[str, float]:
    """Pair-classification metrics of one bundle on ``split``'s patch pairs (threshold: the bundle's own)."""
    dev = resolve_device(device)
    model, meta = load_bundle(bundle, dev)
    pairs = PairSet(pairs_dir, split, "patch", splits_root)
    scores = pair_similarities(model, pairs, model.image_size, dev)
    t = float(meta["extra"].get("threshold", 0.5)) if threshold is None else threshold
    return pair_metrics(scores, pairs.labels, pairs.levels, threshold=t)


def _variant_cfg(cfg: SnnConfig, stage: str, init_from: str = "", name: str = "") -> SnnConfig:
    c = copy.deepcopy(cfg)
    c.train.stage = stage
    c.train.init_from = init_from
    c.train.out_dir = str(Path(cfg.tools.out or defaults.paths().runs / "snn-compare") / name) if name else ""
    c.tracking.run_name = f"{cfg.tracking.run_name or 'mft-snn'}-{name}"
    c.tracking.register_as = ""
    return c


def compare_stages(cfg: SnnConfig, progress: bool | None = None) -> dict[str, Any]:
    """Train the three variants and score them on held-out pairs; -> {variants: {name: metrics}, ...}."""
    import mlflow

    validate(cfg)
    t0 = time.perf_counter()
    out = Path(cfg.tools.out or defaults.paths().runs / "snn-compare").expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    uri = tracking.configure(cfg.tracking.tracking_uri)
    exp_id = tracking.ensure_experiment(cfg.tracking.experiment)
    results: dict[str, Any] = {}
    with mlflow.start_run(experiment_id=exp_id, run_name=f"{cfg.tracking.run_name or 'mft-snn'}-compare") as parent:
        mlflow.set_tags({"histosynth.kind": "snn-compare", "snn.init": cfg.model.init})
        tracking.log_params(cfg.flat())
        tags = {"snn.compare_parent": parent.info.run_id}
        r1 = train_snn(_variant_cfg(cfg, "1", name="stage1"), progress=progress, parent_tags=tags)
        r2 = train_snn(_variant_cfg(cfg, "2", init_from=str(r1.bundle), name="stage1+2"), progress=progress, parent_tags=tags)
        rs = train_snn(_variant_cfg(cfg, "single", name="single"), progress=progress, parent_tags=tags)
        for (key, label), r, steps in zip(VARIANTS, (r1, r2, rs), (r1.steps, r1.steps + r2.steps, rs.steps)):
            m = evaluate_bundle(r.bundle, cfg.train.pairs, cfg.tools.eval_split, cfg.train.splits, cfg.train.device)
            results[key] = {"label": label, "run_id": r.run_id, "bundle": str(r.bundle), "steps": steps, "train_s": round(r.wall_s, 1), "val": r.val, "test": m}
            mlflow.log_metrics({f"{key.replace('+', '_')}/{k}": v for k, v in m.items() if np.isfinite(v)})  # MLflow names: no "+"
        report = {
            "init": r1.init,
            "eval_split": cfg.tools.eval_split,
            "device": r1.device,
            "config": {"stage1": vars(cfg.stage1), "stage2": vars(cfg.stage2), "batch_size": cfg.train.batch_size, "seed": cfg.train.seed},
            "variants": results,
            "wall_s": round(time.perf_counter() - t0, 1),
            "parent_run_id": parent.info.run_id,
            "tracking_uri": uri,
        }
        (out / "compare.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        (out / "compare.md").write_text(markdown_table(report))
        mlflow.log_artifact(str(out / "compare.json"))
        mlflow.log_artifact(str(out / "compare.md"))
    report["out"] = str(out)
    return report


def markdown_table(report: dict[str, Any]) -> str:
    init = report["init"]
    lines = [
        f"Held-out `{report['eval_split']}` pairs; init: {init.get('label', init.get('init'))}; device {report['device']}.",
        "",
        "| variant | steps | test ROC-AUC | test accuracy (val threshold) | AUC same-slide | AUC other-slide |",
        "|---|---|---|---|---|---|",
    ]
    for v in report["variants"].values():
        t = v["test"]
        lines.append(f"| {v['label']} | {v['steps']} | {t['auc']:.4f} | {t['accuracy']:.4f} | {t['auc_within']:.4f} | {t['auc_across']:.4f} |")
    return "\n".join(lines) + "\n"
