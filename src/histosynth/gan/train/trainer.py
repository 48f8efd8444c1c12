"""The training loop: data -> (G, D) -> losses -> checkpoints, samples, MLflow run, generator bundle.

``train(cfg)`` is what the CLI (``histosynth train``) and the pipeline components call. Every run is an
MLflow run (local SQLite store by default, or a tracking server); the returned :class:`TrainResult` says
where the run, its samples, checkpoint and generator bundle are.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

import histosynth
from histosynth.gan import bundle as bundle_mod
from histosynth import defaults, monitoring, tracking
from histosynth.gan.diffaugment import DiffAugment
from histosynth.config import Config, apply_overrides, config_from_dict, config_hash, validate
from histosynth.device import amp_for, describe, determinism, resolve_device, rng_state, seed_everything, set_rng_state
from histosynth.gan.weight_ema import GeneratorEMA
from histosynth.errors import ConfigError, HistosynthError
from histosynth.gan.losses import loss_from_config
from histosynth.gan.nets import build_d_objective, build_discriminator, build_generator, init_dcgan_weights
from histosynth.gan.rl_eo import REWARD_GRADIENT, Similarity, reward_from_config
from histosynth.gan.train.checkpoint import LAST, load_checkpoint, save_checkpoint
from histosynth.data.loader import BatchSource, open_store
from histosynth.gan.train.plots import loss_curve, reward_curve, sample_grid
from histosynth.gan.train.step import GANStep

log = logging.getLogger("histosynth.gan.train")

STEP_METRICS = ("loss_d", "loss_g", "d_real", "d_fake", "grad_norm_d", "grad_norm_g")


@dataclass
class TrainResult:
    run_id: str
    experiment_id: str
    tracking_uri: str
    run_link: str
    out_dir: Path
    bundle: Path
    checkpoint: Path
    samples: Path | None
    loss_curve: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    epochs: int = 0
    wall_s: float = 0.0
    device: str = "cpu"
    amp: str = "off"
    reward_curve: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def generator_spec(cfg: Config, num_classes: int) -> dict[str, Any]:
    """What :func:`histosynth.gan.nets.build_generator` (and the bundle) need to rebuild G."""
    return {
        "arch": cfg.model.arch,
        "image_size": cfg.data.image_size,
        "latent_dim": cfg.model.latent_dim,
        "g_features": cfg.model.g_features,
        "channels": cfg.model.channels,
        "num_classes": num_classes,
        "upsample": cfg.model.upsample,
    }


def discriminator_spec(cfg: Config, num_classes: int) -> dict[str, Any]:
    return {
        "arch": cfg.model.arch,
        "image_size": cfg.data.image_size,
        "d_features": cfg.model.d_features,
        "channels": cfg.model.channels,
        "num_classes": num_classes,
        "spectral_norm": cfg.model.spectral_norm,
        "d_batchnorm": cfg.model.d_batchnorm,
        "d_minibatch_std": cfg.model.d_minibatch_std,
    }


def build_models(cfg: Config, num_classes: int, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """G and D with DCGAN initialisation (N(0, 0.02) convs, N(1, 0.02) batch-norm scales)."""
    if cfg.model.channels != 3:
        raise ConfigError(f"model.channels={cfg.model.channels}: patch stores hold RGB images", "use model.channels=3")
    G = build_generator(generator_spec(cfg, num_classes))
    D = build_discriminator(discriminator_spec(cfg, num_classes))
    init_dcgan_weights(G)
    init_dcgan_weights(D)
    # The projection embedding of a conditional D multiplies spatially summed features; at nn.Embedding's
    # default N(0, 1) it outweighs the N(0, 0.02) head ~50x and D's early gradients explode (norms ~400
    # vs ~8). Give it the DCGAN scale too. (G's embedding is concatenated to z ~ N(0, 1): left as is.)
    d_embed = getattr(D, "embed", None)
    if isinstance(d_embed, torch.nn.Embedding):
        w = d_embed.weight_orig if hasattr(d_embed, "weight_orig") else d_embed.weight
        torch.nn.init.normal_(w, 0.0, 0.02)
    return G.to(device), D.to(device)


def build_optimizers(cfg: Config, G: torch.nn.Module, D: torch.nn.Module) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    betas = (cfg.optim.beta1, cfg.optim.beta2)
    return torch.optim.Adam(G.parameters(), lr=cfg.optim.lr_g, betas=betas), torch.optim.Adam(D.parameters(), lr=cfg.optim.lr_d, betas=betas)


def fixed_inputs(cfg: Config, num_classes: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The sample-grid noise (its own seeded generator, so it never touches the training RNG) and class ids
    (0, 1, .., C-1, 0, 1, ..: every row walks through the classes)."""
    g = torch.Generator().manual_seed(cfg.train.seed + 1_000_003)
    z = torch.randn(cfg.train.n_samples, cfg.model.latent_dim, generator=g).to(device)
    y = (torch.arange(cfg.train.n_samples) % num_classes).to(device) if num_classes else None
    return z, y


class MetricMeter:
    """Sums of metric tensors on the device; synchronised (``.item()``) only when read."""

    def __init__(self, sums: dict[str, float] | None = None, count: int = 0):
        self.sums: dict[str, Any] = dict(sums or {})
        self.count = count

    def add(self, m: dict[str, torch.Tensor]) -> None:
        for k, v in m.items():
            self.sums[k] = self.sums.get(k, 0.0) + v.float()
        self.count += 1

    def means(self) -> dict[str, float]:
        return {k: float(v) / max(1, self.count) for k, v in self.sums.items()}

    def state(self) -> dict[str, Any]:
        return {"sums": {k: float(v) for k, v in self.sums.items()}, "count": self.count}


def _default_run_name(cfg: Config) -> str:
    return f"{cfg.method}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _resolve_out_dir(cfg: Config, run_id: str) -> Path:
    if cfg.train.out_dir:
        return Path(cfg.train.out_dir).expanduser().absolute()
    return defaults.paths().runs / run_id


def config_from_checkpoint(path: str | Path, overrides: list[str] | None = None) -> Config:
    """The config a checkpoint was trained with, plus ``section.key=value`` overrides (e.g. more epochs)."""
    try:
        cfg = config_from_dict(load_checkpoint(path)["config"])
    except ConfigError as e:
        raise HistosynthError(f"checkpoint '{path}' holds a config this version cannot read: {e.problem}", "pass --config with a current preset") from e
    return apply_overrides(cfg, overrides)


def train(cfg: Config, resume: str | Path | None = None, *, progress: bool | None = None, similarity: Similarity | None = None) -> TrainResult:
    """Train a GAN (or, with ``method: ddpm``, the DDPM baseline: :mod:`histosynth.gan.train.ddpm`) as configured; with ``resume`` continue exactly from a checkpoint (new MLflow run, tagged
    with the run it continues). ``progress``: show a progress bar (None: only on a terminal).
    ``similarity``: the RL-EO similarity network to use instead of loading ``rl_eo.snn`` (tests, benchmarks).

    Raises :class:`~histosynth.errors.HistosynthError` (DataError, ConfigError, ServerError) for problems a
    user can fix: missing/corrupt store or checkpoint, a config that does not fit, an unreachable server.
    """
    validate(cfg)
    device = resolve_device(cfg.train.device)
    with determinism(device, cfg.train.deterministic):
        if cfg.method == "ddpm":
            if resume:
                raise ConfigError("--resume is not supported for method=ddpm", "start a new run (train.max_steps sets its length)")
            from histosynth.gan.train.ddpm import train_ddpm

            return train_ddpm(cfg, device, progress)
        return _train(cfg, resume, device, progress, similarity)


def _train(cfg: Config, resume: str | Path | None, device: torch.device, progress: bool | None, similarity: Similarity | None = None) -> TrainResult:
    import mlflow
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    t_start = time.perf_counter()
    ckpt = load_checkpoint(resume) if resume else None
    amp = amp_for(device, cfg.train.amp, cfg.train.cpu_bf16)
    seed_everything(cfg.train.seed)

    uri = tracking.configure(cfg.tracking.tracking_uri)
    tracking.check_server(uri)  # fail before loading data when the server is down
    experiment_id = tracking.ensure_experiment(cfg.tracking.experiment)

    store = open_store(cfg.data.root, cfg.data.split)
    source = BatchSource(
        store,
        batch_size=cfg.train.batch_size,
        image_size=cfg.data.image_size,
        device=device,
        seed=cfg.train.seed,
        hflip=cfg.data.hflip,
        vflip=cfg.data.vflip,
        classes=cfg.data.classes,
    )
    num_classes = len(source.classes) if cfg.data.conditional else 0
    if cfg.data.conditional and num_classes < 2:
        log.warning("data.conditional=true with a single class (%s): conditioning has no effect", source.classes)
    steps_per_epoch = len(source) // max(1, cfg.optim.d_steps)
    if steps_per_epoch < 1:
        raise ConfigError(f"{len(source)} batches per epoch but optim.d_steps={cfg.optim.d_steps}", "lower optim.d_steps or train.batch_size")
    total_steps = cfg.train.epochs * steps_per_epoch
    if cfg.train.max_steps > 0:
        total_steps = min(total_steps, cfg.train.max_steps)

    G, D = build_models(cfg, num_classes, device)
    opt_g, opt_d = build_optimizers(cfg, G, D)
    loss = loss_from_config(cfg.loss)
    rl = reward_from_config(cfg, source.classes, device, similarity)  # None unless rl_eo.enabled
    step_fn = GANStep(
        G, D, opt_g, opt_d, loss,
        latent_dim=cfg.model.latent_dim,
        conditional=num_classes > 0,
        amp=amp,
        grad_clip=cfg.optim.grad_clip,
        clip_mode=cfg.optim.clip_mode,
        gp_weight=cfg.loss.gp_weight,
        reward=rl,
        augment=DiffAugment(cfg.augment.policy),
        d_objective=build_d_objective(cfg.model.arch, loss, cfg.loss.recon_weight),
    )
    z_fixed, y_fixed = fixed_inputs(cfg, num_classes, device)

    epoch, step, batch_start = 0, 0, 0
    perm: torch.Tensor | None = None
    history: list[dict[str, Any]] = []
    epoch_meter = MetricMeter()
    window_state: dict[str, Any] = {"sums": {}, "count": 0}
    resumed_from: dict[str, str] = {}
    if ckpt is not None:
        try:
            G.load_state_dict(ckpt["generator"])
            D.load_state_dict(ckpt["discriminator"])
            opt_g.load_state_dict(ckpt["opt_g"])
            opt_d.load_state_dict(ckpt["opt_d"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise HistosynthError(
                f"checkpoint '{resume}' does not fit this model config ({str(e).splitlines()[0]})",
                "resume with the checkpoint's own config (histosynth train --resume CKPT without --config) and change only training settings",
            ) from e
        if ckpt.get("scaler_g"):
            step_fn.scaler_g.load_state_dict(ckpt["scaler_g"])
        if ckpt.get("scaler_d"):
            step_fn.scaler_d.load_state_dict(ckpt["scaler_d"])
        set_rng_state(ckpt["rng"])
        source.load_state_dict(ckpt["data"])
        p = ckpt["progress"]
        epoch, step, batch_start = int(p["epoch"]), int(p["step"]), int(p["batch"])
        perm = p.get("perm")
        history = list(p.get("history", []))
        epoch_meter = MetricMeter(p.get("epoch_sums", {}).get("sums"), p.get("epoch_sums", {}).get("count", 0))
        window_state = p.get("window_sums", {"sums": {}, "count": 0})
        if perm is not None and (perm.numel() != source.n or batch_start >= steps_per_epoch):
            log.warning("the data or batch size changed since the checkpoint: starting a fresh epoch (the resume is not exact)")
            perm, batch_start, epoch_meter = None, 0, MetricMeter()
        run_info = ckpt.get("run", {})
        if run_info.get("manifest_hash") and run_info["manifest_hash"] != store.manifest_hash:
            log.warning("resuming on different data: checkpoint manifest %s, store %s", run_info["manifest_hash"][:12], store.manifest_hash[:12])
        resumed_from = {
            "histosynth.resumed_from_run": str(run_info.get("run_id", "")),
            "histosynth.resumed_from_checkpoint": str(Path(resume).absolute()),
            "histosynth.resumed_at_step": str(step),
        }
        if rl is not None and ckpt.get("rl_eo"):
            rl.load_state_dict(ckpt["rl_eo"])
        log.info("resuming from %s at epoch %d step %d", resume, epoch, step)

    ema = GeneratorEMA(G, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    if ema is not None and ckpt is not None:
        if ckpt.get("generator_ema"):
            ema.load_state_dict(ckpt["generator_ema"])
        else:
            log.warning("the checkpoint has no generator EMA: the average restarts from the current weights")
    G_out = ema.model if ema is not None else G  # what samples and the bundle use

    def refresh_ema_stats() -> None:
        """The average's own batch-norm statistics before it is sampled or saved (see histosynth.gan.weight_ema)."""
        if ema is not None:
            with amp.autocast():
                ema.standing_stats(cfg.model.latent_dim, num_classes, seed=cfg.train.seed)

    env = describe(device, amp)
    nested = mlflow.active_run() is not None

    with mlflow.start_run(experiment_id=experiment_id, run_name=cfg.tracking.run_name or _default_run_name(cfg), nested=nested) as run:
        run_id = run.info.run_id
        out_dir = _resolve_out_dir(cfg, run_id)
        ckpt_dir, sample_dir = out_dir / "checkpoints", out_dir / "samples"
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(cfg.to_yaml())

        tracking.log_params(cfg.flat())
        tracking.log_params({"model.num_classes": num_classes, "train.steps_per_epoch": steps_per_epoch, "train.total_steps": total_steps, "config.hash": config_hash(cfg)})
        tracking.log_data_manifest(store)
        mlflow.log_text(cfg.to_yaml(), "config.yaml")
        mlflow.set_tags(
            {
                **{f"env.{k}": v for k, v in env.items()},
                "histosynth.version": histosynth.__version__,
                "histosynth.method": cfg.method,
                "histosynth.out_dir": str(out_dir),
                "histosynth.classes": ",".join(source.classes),
                "histosynth.generator_weights": f"ema({cfg.train.ema_decay})" if ema is not None else "raw",
                **({"rl_eo.mode": rl.mode, "rl_eo.reward_gradient": REWARD_GRADIENT[rl.mode]} if rl is not None else {}),
                **resumed_from,
            }
        )
        log.info("run %s on %s (amp %s): %d steps/epoch, %d steps, out %s", run_id, device, amp.name, steps_per_epoch, total_steps, out_dir)

        def checkpoint(path: Path, mid_epoch: bool) -> Path:
            payload = {
                "config": cfg.to_dict(),
                "generator": G.state_dict(),
                "discriminator": D.state_dict(),
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "scaler_g": step_fn.scaler_g.state_dict(),
                "scaler_d": step_fn.scaler_d.state_dict(),
                **({"generator_ema": ema.state_dict()} if ema is not None else {}),
                **({"rl_eo": rl.state_dict()} if rl is not None else {}),
                "rng": rng_state(),
                "data": source.state_dict(),
                "progress": {
                    "epoch": epoch,
                    "step": step,
                    "batch": batch_start if mid_epoch else 0,
                    "perm": perm if mid_epoch else None,
                    "epoch_sums": epoch_meter.state() if mid_epoch else {"sums": {}, "count": 0},
                    "window_sums": window.state(),  # the metric-logging window in progress
                    "history": history,
                },
                "run": {"run_id": run_id, "tracking_uri": uri, "manifest_hash": store.manifest_hash, "histosynth": histosynth.__version__},
            }
            save_checkpoint(path, payload)
            mlflow.log_artifact(str(path), "checkpoints")
            return path

        last_samples: Path | None = None
        window = MetricMeter(window_state["sums"], window_state["count"])
        pusher = monitoring.from_env(run_id, cfg.method)  # Prometheus pushgateway when HISTOSYNTH_PUSHGATEWAY is set
        t_window, imgs_window = time.perf_counter(), 0
        imgs_per_step = cfg.train.batch_size * cfg.optim.d_steps
        last_step_metrics: dict[str, float] = {}
        bar = tqdm(total=total_steps, initial=step, disable=(None if progress is None else not progress), desc="train", unit="step", dynamic_ncols=True)
        G.train()
        D.train()
        with logging_redirect_tqdm():  # log lines print above the progress bar
            try:
                done = step >= total_steps
                while not done and epoch < cfg.train.epochs:
                    if perm is None:
                        perm = source.permutation()
                    batches = source.batches(perm, batch_start * cfg.optim.d_steps)
                    for k in range(batch_start, steps_per_epoch):
                        group = [(x, y) for _, x, y in (next(batches) for _ in range(cfg.optim.d_steps))]
                        m = step_fn(group)
                        if ema is not None:
                            ema.update(G)
                        step += 1
                        batch_start = k + 1
                        imgs_window += imgs_per_step
                        window.add(m)
                        epoch_meter.add(m)
                        bar.update(1)
                        if step % cfg.train.log_every == 0 or step == total_steps:
                            vals = window.means()
                            elapsed = max(time.perf_counter() - t_window, 1e-9)
                            vals["img_per_s"] = imgs_window / elapsed
                            if rl is not None:
                                vals.update(rl.window_rewards())
                            bad = [k2 for k2 in ("loss_d", "loss_g") if not math.isfinite(vals[k2])]
                            if bad:
                                raise HistosynthError(f"training diverged: {bad} not finite at step {step}", "lower optim.lr_g/lr_d, keep optim.grad_clip > 0, or try loss.name=hinge")
                            mlflow.log_metrics(vals, step=step)
                            if pusher is not None:
                                pusher.push(step, vals, steps=window.count, seconds=elapsed, device=device)
                            history.append({"step": step, **{k2: v for k2, v in vals.items() if k2 in ("loss_d", "loss_g", "d_real", "d_fake") or k2.startswith("rl_eo/")}})
                            bar.set_postfix({k2: f"{vals[k2]:.3f}" for k2 in ("loss_d", "loss_g", "d_real", "d_fake")}, refresh=False)
                            last_step_metrics = vals
                            window = MetricMeter()
                            t_window, imgs_window = time.perf_counter(), 0
                        if step >= total_steps:
                            done = True
                            break
                    if batch_start >= steps_per_epoch:  # the epoch is complete
                        epoch += 1
                        means = epoch_meter.means()
                        if rl is not None:
                            means.update(rl.epoch_rewards())
                        mlflow.log_metrics({f"epoch/{k2}": v for k2, v in means.items()}, step=epoch)
                        log.info("epoch %d/%d step %d: %s", epoch, cfg.train.epochs, step, " ".join(f"{k2}={means[k2]:.4f}" for k2 in STEP_METRICS if k2 in means))
                        epoch_meter = MetricMeter()
                        perm, batch_start = None, 0
                        if cfg.train.sample_every > 0 and epoch % cfg.train.sample_every == 0:
                            refresh_ema_stats()
                            last_samples = sample_grid(G_out, z_fixed, y_fixed, sample_dir / f"epoch_{epoch:04d}.png", amp)
                            mlflow.log_artifact(str(last_samples), "samples")
                        if cfg.train.checkpoint_every > 0 and epoch % cfg.train.checkpoint_every == 0 and not done and epoch < cfg.train.epochs:
                            checkpoint(ckpt_dir / LAST, mid_epoch=False)
            finally:
                bar.close()

        mid_epoch = batch_start > 0
        ckpt_path = checkpoint(ckpt_dir / LAST, mid_epoch=mid_epoch)
        refresh_ema_stats()
        final_samples = sample_grid(G_out, z_fixed, y_fixed, sample_dir / "final.png", amp)
        mlflow.log_artifact(str(final_samples), "samples")
        last_samples = final_samples
        curve = None
        if history:
            curve = loss_curve(history, out_dir / "loss_curve.png", title=f"{cfg.method} {run_id[:8]}")
            mlflow.log_artifact(str(curve), "plots")
        rcurve = None
        if rl is not None and history:
            rcurve = reward_curve(history, rl.classes, out_dir / "reward_curve.png", title=f"RL-EO reward (w={rl.weight}) {run_id[:8]}")
            mlflow.log_artifact(str(rcurve), "plots")

        spec = generator_spec(cfg, num_classes)
        extra = {
            "run_id": run_id,
            "tracking_uri": uri,
            "epoch": epoch,
            "step": step,
            "data_manifest_hash": store.manifest_hash,
            "loss": cfg.loss.name,
            "method": cfg.method,
            "ema_decay": cfg.train.ema_decay,
            "histosynth": histosynth.__version__,
            "config": cfg.to_dict(),
        }
        bundle_path = bundle_mod.save_generator(out_dir / "generator", G_out, spec, source.classes, extra)
        mlflow.log_artifact(str(bundle_path), "generator")
        mlflow.log_dict({"spec": spec, "classes": source.classes, "format": bundle_mod.FORMAT}, "generator/spec.json")

        wall = time.perf_counter() - t_start
        final = {f"final/{k}": v for k, v in last_step_metrics.items()}
        final.update({"train/wall_s": wall, "train/steps": float(step), "train/epochs": float(epoch)})
        mlflow.log_metrics(final, step=step)
        mlflow.set_tag("histosynth.gan.bundle", str(bundle_path))

    return TrainResult(
        run_id=run_id,
        experiment_id=experiment_id,
        tracking_uri=uri,
        run_link=tracking.run_link(uri, experiment_id, run_id),
        out_dir=out_dir,
        bundle=bundle_path,
        checkpoint=ckpt_path,
        samples=last_samples,
        loss_curve=curve,
        metrics={**last_step_metrics, "wall_s": wall},
        steps=step,
        epochs=epoch,
        wall_s=wall,
        device=str(device),
        amp=amp.name,
        reward_curve=rcurve,
    )
