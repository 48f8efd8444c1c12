"""Multistage progressive fine-tuning of the MFT-SNN, tracked in MLflow.

* stage ``1``: whole images (the mosaics of :mod:`histosynth.snn.pairs`) resized to ``stage1.image_size``
  (paper 224), the last ``stage1.trainable`` conv layers train (paper 8), from the chosen init;
* stage ``2``: loads a stage-1 bundle (``train.init_from``) and fine-tunes on patches (``stage2.image_size``,
  paper 64) with only the last ``stage2.trainable`` (3) conv layers trainable;
* ``single``: the single-stage baseline — patches only, from the init, stage 1's trainable count, for the
  epochs of both stages together.

Loss: contrastive (embeddings) + ``loss.recon_weight`` x MSE (reconstruction). One backward pass; Adagrad
(``optim.lr_recon``) steps the decoder, Adam (``optim.lr_sim``) steps the trainable encoder layers and the
embedding head. Every run records its init (imagenet / hed / random) as params, tags and in the bundle.

Under ``torchrun`` (:mod:`histosynth.distributed`, the GAN trainer's semantics): ``train.batch_size`` is the global
batch, every rank draws the same pair order and trains on its slice of each batch, gradients are averaged over
the ranks before both optimisers step, and logged losses (and the similar / dissimilar similarity means) are
over the global batch. Rank 0 alone opens the MLflow run, scores the validation pairs and writes the bundle; every
rank returns its result. The MFT-SNN has no batch-norm layers, so there is nothing to synchronise there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from histosynth import defaults, tracking
from histosynth import distributed
from histosynth.device import describe, determinism, seed_everything
from histosynth.distributed import World
from histosynth.errors import ConfigError
from histosynth.config.snn import SnnConfig, config_hash, validate
from histosynth.snn.mft_snn import FILENAME, MFTSNN, read_bundle, save_bundle, snn_loss
from histosynth.snn.pairs import PairSet
from histosynth.snn.score import pair_metrics, pair_similarities
from histosynth.snn.weights import load_init

log = logging.getLogger("histosynth.snn")
BUNDLE_ARTIFACT = "snn"


@dataclass
class SnnResult:
    run_id: str
    stage: str
    bundle: Path
    out_dir: Path
    init: dict[str, Any]
    steps: int
    epochs: int
    wall_s: float
    device: str
    tracking_uri: str
    run_link: str
    metrics: dict[str, float] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    registered: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(bundle=str(self.bundle), out_dir=str(self.out_dir), plots=[str(p) for p in self.plots])
        return d


def build_spec(cfg: SnnConfig, image_size: int) -> dict[str, Any]:
    return {"arch": "mft-snn-vgg16", "emb_dim": cfg.model.emb_dim, "hidden": cfg.model.hidden, "decoder_width": cfg.model.decoder_width, "image_size": int(image_size)}


def build_model(cfg: SnnConfig, stage: str, image_size: int) -> tuple[MFTSNN, dict[str, Any], list[dict[str, Any]]]:
    """-> (model, init info, stage history). Stage 2 continues a stage-1 bundle; otherwise the chosen init."""
    if stage == "2":
        if not cfg.train.init_from:
            raise ConfigError("stage 2 fine-tunes a stage-1 network, and train.init_from is empty", "pass --init-from PATH/snn.pt (the bundle `histosynth snn train --stage 1` wrote)")
        payload = read_bundle(cfg.train.init_from)
        prev = payload.get("extra", {})
        if prev.get("stage") != "1":
            log.warning("train.init_from is a stage-%s bundle, not stage 1", prev.get("stage"))
        model = MFTSNN({**payload["spec"], "image_size": int(image_size)}, seed=cfg.train.seed)
        model.load_state_dict(payload["state_dict"])
        return model, dict(prev.get("init", {})), list(prev.get("stages", []))
    model = MFTSNN(build_spec(cfg, image_size), seed=cfg.train.seed)
    norm, info = load_init(model.encoder.features, cfg.model.init, cfg.model.weights or None, seed=cfg.train.seed)
    model.encoder.set_norm(norm)
    return model, info.to_dict(), []


def train_snn(cfg: SnnConfig, *, progress: bool | None = None, parent_tags: dict[str, str] | None = None) -> SnnResult:
    """Train one stage as configured (``cfg.train.stage``); raises HistosynthError for fixable problems."""
    validate(cfg)
    world, device = distributed.init(cfg.train.device)
    with determinism(device, cfg.train.deterministic):
        return world.broadcast(_train(cfg, device, progress, parent_tags or {}, world))


def _plots(out: Path, history: list[dict[str, float]], val_scores: np.ndarray | None, val_levels: np.ndarray | None, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    if history:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        steps = [h["step"] for h in history]
        for key in ("loss", "loss_contrastive", "loss_recon"):
            ax.plot(steps, [h[key] for h in history], label=key)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.legend()
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(out / "loss_curve.png", dpi=100)
        plt.close(fig)
        paths.append(out / "loss_curve.png")
    if val_scores is not None and len(val_scores):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for lvl, name in ((0, "similar"), (1, "dissimilar: same slide"), (2, "dissimilar: other slide")):
            s = val_scores[val_levels == lvl]
            if len(s):
                ax.hist(s, bins=30, range=(0, 1), alpha=0.5, label=f"{name} ({len(s)})")
        ax.set_xlabel("similarity")
        ax.legend()
        ax.set_title(f"{title}: validation pairs")
        fig.tight_layout()
        fig.savefig(out / "val_similarity.png", dpi=100)
        plt.close(fig)
        paths.append(out / "val_similarity.png")
    return paths


def _fit(cfg: SnnConfig, st: Any, model: MFTSNN, train_set: PairSet, bs: int, total: int, device: torch.device, world: World, log: Callable[[int, dict[str, float]], None], bar: Any) -> int:
    """The training steps (``total`` of them, global batch ``bs``) -> steps done; ``log(step, means)`` every
    ``train.log_every`` steps and at the last, ``log(step, {"epoch": n})`` after each epoch."""
    recon_params, sim_params = model.param_groups()
    opt_recon = torch.optim.Adagrad(recon_params, lr=cfg.optim.lr_recon)
    opt_sim = torch.optim.Adam(sim_params, lr=cfg.optim.lr_sim)
    steps_per_epoch = max(1, len(train_set) // bs)
    part = world.part(bs)
    rng = np.random.default_rng(cfg.train.seed)
    step = 0
    acc: dict[str, float] = {}
    n_acc = 0
    for epoch in range(st.epochs):
        if step >= total:
            break
        perm = rng.permutation(len(train_set))
        for b in range(steps_per_epoch):
            if step >= total:
                break
            xa, xb, y = train_set.batch(perm[b * bs : (b + 1) * bs][part], st.image_size, device)
            out = snn_loss(model, xa, xb, y, cfg.loss.margin, cfg.loss.recon_weight)
            opt_recon.zero_grad(set_to_none=True)
            opt_sim.zero_grad(set_to_none=True)
            out["loss"].backward()
            world.average_gradients(model.parameters())
            opt_recon.step()
            opt_sim.step()
            step += 1
            sim, similar = out["sim"], y == 1
            losses = [out[k].detach().float() for k in ("loss", "loss_contrastive", "loss_recon")]
            # sums and counts, so the similarity means are over the global batch whatever each slice holds
            parts = [*losses, sim[similar].sum(), similar.sum(), sim[~similar].sum(), (~similar).sum()]
            sums = world.sum(torch.stack([t.float() for t in parts])).tolist()
            vals = {k: v / world.size for k, v in zip(("loss", "loss_contrastive", "loss_recon"), sums)}
            if sums[4]:
                vals["sim_similar"] = sums[3] / sums[4]
            if sums[6]:
                vals["sim_dissimilar"] = sums[5] / sums[6]
            for k, v in vals.items():
                acc[k] = acc.get(k, 0.0) + v
            n_acc += 1
            bar.update(1)
            if step % cfg.train.log_every == 0 or step == total:
                log(step, {k: v / n_acc for k, v in acc.items()})
                acc, n_acc = {}, 0
        log(step, {"epoch": epoch + 1})
    return step


def _train(cfg: SnnConfig, device: torch.device, progress: bool | None, parent_tags: dict[str, str], world: World = World()) -> SnnResult | None:
    """One stage; the MLflow run, validation and bundle on rank 0 (None on ranks > 0)."""
    import sys

    import mlflow
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    stage = cfg.train.stage
    st = cfg.stage_cfg(stage)
    kind = "stage1" if stage == "1" else "patch"
    seed_everything(cfg.train.seed)
    train_set = PairSet(cfg.train.pairs, "train", kind, cfg.train.splits)
    val_set = PairSet(cfg.train.pairs, "val", kind, cfg.train.splits) if "val" in train_set.manifest["splits"] else None
    model, init, stages = build_model(cfg, stage, st.image_size)
    trainable = model.set_trainable(st.trainable)
    model.to(device).train()
    world.prepare(model)
    bs = min(cfg.train.batch_size, len(train_set))
    steps_per_epoch = max(1, len(train_set) // bs)
    total = steps_per_epoch * st.epochs
    if st.max_steps:
        total = min(total, st.max_steps)
    if not world.is_main:
        _fit(cfg, st, model, train_set, bs, total, device, world, lambda step, means: None, tqdm(disable=True))
        return None

    uri = tracking.configure(cfg.tracking.tracking_uri)
    tracking.check_server(uri)
    exp_id = tracking.ensure_experiment(cfg.tracking.experiment)
    run_name = cfg.tracking.run_name or f"mft-snn-stage{stage}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    nested = mlflow.active_run() is not None
    history: list[dict[str, float]] = []
    show = progress if progress is not None else sys.stderr.isatty()
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name, nested=nested) as run:
        run_id = run.info.run_id
        out_dir = Path(cfg.train.out_dir).expanduser().absolute() if cfg.train.out_dir else defaults.paths().runs / run_id
        out_dir.mkdir(parents=True, exist_ok=True)
        tracking.log_params(cfg.flat())
        tracking.log_params(
            {
                "snn.stage.epochs": st.epochs,
                "snn.stage.trainable": st.trainable,
                "snn.stage.image_size": st.image_size,
                "snn.trainable_layers": trainable,
                "snn.trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                "snn.steps_per_epoch": steps_per_epoch,
                "snn.total_steps": total,
                "snn.pairs.train": len(train_set),
                "snn.processes": world.size,
                "config.hash": config_hash(cfg),
                **{f"init.{k}": v for k, v in init.items()},
            }
        )
        mlflow.log_text(cfg.to_yaml(), "config.yaml")
        mlflow.log_dict(train_set.manifest, "pairs_manifest.json")
        mlflow.set_tags(
            {
                "histosynth.kind": "snn",
                "histosynth.method": "mft-snn",
                "snn.stage": stage,
                "snn.init": str(init.get("init", "?")),
                "snn.init_label": str(init.get("label", "")),
                "snn.imagenet": str(bool(init.get("imagenet", False))).lower(),
                **describe(device),
                **parent_tags,
            }
        )
        bar = tqdm(total=total, desc=f"snn stage {stage}", unit="step", disable=not show)

        def log(step: int, means: dict[str, float]) -> None:
            mlflow.log_metrics(means, step=step)
            if "loss" in means:
                history.append({"step": step, **means})
                bar.set_postfix(loss=f"{means['loss']:.4f}")

        step = _fit(cfg, st, model, train_set, bs, total, device, world, log, bar)
        bar.close()
        val: dict[str, float] = {}
        val_scores = val_levels = None
        if val_set is not None and len(val_set):
            val_scores = pair_similarities(model, val_set, st.image_size, device, batch_size=max(bs, 32))
            val_levels = val_set.levels
            val = pair_metrics(val_scores, val_set.labels, val_levels)
            mlflow.log_metrics({f"val/{k}": v for k, v in val.items() if np.isfinite(v)}, step=step)
        plots = _plots(out_dir / "plots", history, val_scores, val_levels, f"MFT-SNN stage {stage} ({init.get('init', '?')} init)")
        for p in plots:
            mlflow.log_artifact(str(p), "plots")
        this_stage = {"stage": stage, "epochs": st.epochs, "steps": step, "trainable": st.trainable, "trainable_layers": trainable, "image_size": st.image_size, "run_id": run_id, "pairs_kind": kind, "val": val}
        extra = {
            "init": init,
            "stage": stage,
            "stages": [*stages, this_stage],
            "threshold": val.get("threshold", 0.5),
            "config": cfg.to_dict(),
            "created": datetime.now().isoformat(timespec="seconds"),
        }
        bundle = save_bundle(out_dir / FILENAME, model, extra)
        mlflow.log_artifact(str(bundle), BUNDLE_ARTIFACT)
        mlflow.log_dict({"spec": model.spec, "init": init, "stages": extra["stages"]}, f"{BUNDLE_ARTIFACT}/spec.json")
        mlflow.set_tag("histosynth.gan.bundle", str(bundle))
        final = history[-1] if history else {}
        mlflow.log_metric("wall_s", time.perf_counter() - t0)
    return SnnResult(
        run_id=run_id,
        stage=stage,
        bundle=bundle,
        out_dir=out_dir,
        init=init,
        steps=step,
        epochs=st.epochs,
        wall_s=time.perf_counter() - t0,
        device=str(device),
        tracking_uri=uri,
        run_link=tracking.run_link(uri, exp_id, run_id),
        metrics={k: v for k, v in final.items() if k != "step"},
        val=val,
        plots=plots,
    )
