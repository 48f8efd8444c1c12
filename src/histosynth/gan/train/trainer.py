"""GAN training: data -> (G, D) -> :class:`~histosynth.gan.train.loop.TrainLoop` with its callbacks ->
checkpoints, samples, MLflow run, generator bundle.

``train(cfg)`` is what the CLI (``histosynth train``) and the pipeline components call. Every run is an
MLflow run (local SQLite store by default, or a tracking server); the returned :class:`TrainResult` says
where the run, its samples, checkpoint and generator bundle are. This module builds the run (models, the
step, the resumed state) and picks its callbacks; the loop itself and each callback live in their own modules.

Under ``torchrun`` (:mod:`histosynth.distributed`) every process runs this with its part of each global batch
and averaged gradients; rank 0 alone opens the MLflow run and writes checkpoints, samples, curves and the
bundle (its callbacks are the only ones with sinks), and every rank returns rank 0's :class:`TrainResult`.
Model initialisation and the data order use ``train.seed`` on every rank (identical nets, one global order);
the noise (z, augmentation) of ranks > 0 has its own seeds (:meth:`~histosynth.distributed.World.noise_seed`),
so rank 0 draws what a one-process run draws. A checkpoint holds rank 0's state and the global step: resuming
with another number of processes continues the same global data order. The step metrics are means over the
ranks; RL-EO's per-class reward means (``rl_eo/reward/<class>``) are rank 0's slice only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import histosynth
from histosynth import distributed, monitoring
from histosynth.config import Config, apply_overrides, config_from_dict, validate
from histosynth.data.loader import BatchSource
from histosynth.data.store import PatchStore
from histosynth.device import Amp, amp_for, determinism, rng_state, seed_everything, set_rng_state
from histosynth.distributed import World
from histosynth.errors import ConfigError, HistosynthError
from histosynth.gan.diffaugment import DiffAugment
from histosynth.gan.lecam import LeCam
from histosynth.gan.losses import loss_from_config
from histosynth.gan.nets import build_d_objective, build_discriminator, build_generator, init_dcgan_weights
from histosynth.gan.rl_eo import REWARD_GRADIENT, RLEOReward, Similarity
from histosynth.gan.train.callbacks import Checkpoints, EMAUpdate, EpochMetrics, History, MetricMeter, MetricWindow, Progress, SampleGrids, mlflow_metrics, pushgateway
from histosynth.gan.train.checkpoint import LAST, load_checkpoint
from histosynth.gan.train.loop import Callback, LoopState, TrainLoop
from histosynth.gan.train.plots import loss_curve, reward_curve
from histosynth.gan.train.runs import Run, TrainResult, open_data, open_tracking, record_end, record_start, resolve_out_dir, result, start_run
from histosynth.gan.train.similarity import reward_from_config
from histosynth.gan.train.step import GANStep
from histosynth.gan.weight_ema import GeneratorEMA

log = logging.getLogger("histosynth.gan.train")

CURVE_METRICS = ("loss_d", "loss_g", "d_real", "d_fake")


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
        **({"cond_bn": True} if cfg.model.g_cond_bn else {}),
        **({"skip_z": True} if cfg.model.g_skip_z else {}),
        **({"attention": cfg.model.masan_attention} if cfg.model.arch == "masan" else {}),
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
        **({"san": cfg.model.san} if cfg.model.arch == "masan" else {}),
        **({"discriminator": "projected", "projected_size": cfg.model.projected_size, "projected_head_growth": cfg.model.projected_head_growth} if cfg.model.discriminator == "projected" else {}),
    }


def build_models(cfg: Config, num_classes: int, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """G and D with DCGAN initialisation (N(0, 0.02) convs, N(1, 0.02) batch-norm scales), in channels-last memory
    format: oneDNN (CPU) and cuDNN (tensor cores) run convolutions faster in it (a projected-D step on 2 CPU cores
    with bf16: 0.32 vs 0.38 s); the numbers are the same up to float rounding."""
    if cfg.model.channels != 3:
        raise ConfigError(f"model.channels={cfg.model.channels}: patch stores hold RGB images", "use model.channels=3")
    G = build_generator(generator_spec(cfg, num_classes))
    D = build_discriminator(discriminator_spec(cfg, num_classes))
    init_dcgan_weights(G)
    init_dcgan_weights(D)
    if hasattr(D, "load_pretrained"):
        D.load_pretrained()  # Projected GAN: the frozen ImageNet feature network
    # The projection embedding of a conditional D multiplies spatially summed features; at nn.Embedding's
    # default N(0, 1) it outweighs the N(0, 0.02) head ~50x and D's early gradients explode (norms ~400
    # vs ~8). Give it the DCGAN scale too. (G's embedding is concatenated to z ~ N(0, 1): left as is.)
    d_embed = getattr(D, "embed", None)
    if isinstance(d_embed, torch.nn.Embedding):
        w = d_embed.weight_orig if hasattr(d_embed, "weight_orig") else d_embed.weight
        torch.nn.init.normal_(w, 0.0, 0.02)
    return G.to(device, memory_format=torch.channels_last), D.to(device, memory_format=torch.channels_last)


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


def config_from_checkpoint(path: str | Path, overrides: list[str] | None = None) -> Config:
    """The config a checkpoint was trained with, plus ``section.key=value`` overrides (e.g. more epochs)."""
    try:
        cfg = config_from_dict(load_checkpoint(path)["config"])
    except ConfigError as e:
        raise HistosynthError(f"checkpoint '{path}' holds a config this version cannot read: {e.problem}", "pass --config with a current preset") from e
    return apply_overrides(cfg, overrides)


@dataclass
class GAN:
    """What one GAN run trains: the nets, their optimisers, the update step and the batch budget."""

    G: torch.nn.Module
    D: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    step: GANStep
    rl: RLEOReward | None
    num_classes: int
    steps_per_epoch: int
    total_steps: int


def build_gan(cfg: Config, source: BatchSource, device: torch.device, amp: Amp, similarity: Similarity | None = None, world: World = World()) -> GAN:
    """Models, optimisers, loss, RL-EO reward and :class:`GANStep` for ``cfg``, in the order that draws the seeded RNG
    (``world``: the step averages gradients over its processes)."""
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
    step = GANStep(
        G, D, opt_g, opt_d, loss,
        latent_dim=cfg.model.latent_dim,
        conditional=num_classes > 0,
        amp=amp,
        grad_clip=cfg.optim.grad_clip,
        clip_mode=cfg.optim.clip_mode,
        gp_weight=cfg.loss.gp_weight,
        reward=rl,
        augment=DiffAugment(cfg.augment.policy, p=cfg.augment.p),
        d_objective=build_d_objective(cfg.model.arch, loss, cfg.loss.recon_weight),
        sync=world.average_gradients if world.parallel else None,
        lecam=LeCam(cfg.loss.lecam_weight, cfg.loss.lecam_decay) if cfg.loss.lecam_weight > 0 else None,
    )  # fmt: skip
    return GAN(G, D, opt_g, opt_d, step, rl, num_classes, steps_per_epoch, total_steps)


@dataclass
class Start:
    """Where the loop starts and the metric sums and history it continues (empty for a new run)."""

    state: LoopState
    epoch_meter: MetricMeter
    window_meter: MetricMeter
    history: list[dict[str, Any]]
    tags: dict[str, str]


def fresh_start(cfg: Config, gan: GAN) -> Start:
    return Start(LoopState(gan.total_steps, cfg.train.epochs, gan.steps_per_epoch), MetricMeter(), MetricMeter(), [], {})


def restore(ckpt: dict[str, Any], resume: str | Path, cfg: Config, gan: GAN, source: BatchSource, store: PatchStore) -> Start:
    """Load a checkpoint into the run's parts (nets, optimisers, scalers, RNG, shuffling, reward) -> where it stopped."""
    try:
        gan.G.load_state_dict(ckpt["generator"])
        gan.D.load_state_dict(ckpt["discriminator"])
        gan.opt_g.load_state_dict(ckpt["opt_g"])
        gan.opt_d.load_state_dict(ckpt["opt_d"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise HistosynthError(
            f"checkpoint '{resume}' does not fit this model config ({str(e).splitlines()[0]})",
            "resume with the checkpoint's own config (histosynth train --resume CKPT without --config) and change only training settings",
        ) from e
    for name, scaler in (("scaler_g", gan.step.scaler_g), ("scaler_d", gan.step.scaler_d)):
        if ckpt.get(name):
            scaler.load_state_dict(ckpt[name])
    if gan.step.lecam is not None and ckpt.get("lecam"):
        gan.step.lecam.load_state_dict(ckpt["lecam"])
    set_rng_state(ckpt["rng"])
    source.load_state_dict(ckpt["data"])
    p = ckpt["progress"]
    state = LoopState(gan.total_steps, cfg.train.epochs, gan.steps_per_epoch, epoch=int(p["epoch"]), step=int(p["step"]), batch=int(p["batch"]), perm=p.get("perm"))
    sums = p.get("epoch_sums", {})
    epoch_meter = MetricMeter(sums.get("sums"), sums.get("count", 0))
    window = p.get("window_sums", {"sums": {}, "count": 0})
    if state.perm is not None and (state.perm.numel() != source.n or state.batch >= gan.steps_per_epoch):
        log.warning("the data or batch size changed since the checkpoint: starting a fresh epoch (the resume is not exact)")
        state.perm, state.batch, epoch_meter = None, 0, MetricMeter()
    run_info = ckpt.get("run", {})
    if run_info.get("manifest_hash") and run_info["manifest_hash"] != store.manifest_hash:
        log.warning("resuming on different data: checkpoint manifest %s, store %s", run_info["manifest_hash"][:12], store.manifest_hash[:12])
    tags = {
        "histosynth.resumed_from_run": str(run_info.get("run_id", "")),
        "histosynth.resumed_from_checkpoint": str(Path(resume).absolute()),
        "histosynth.resumed_at_step": str(state.step),
    }
    if gan.rl is not None and ckpt.get("rl_eo"):
        gan.rl.load_state_dict(ckpt["rl_eo"])
    log.info("resuming from %s at epoch %d step %d", resume, state.epoch, state.step)
    return Start(state, epoch_meter, MetricMeter(window["sums"], window["count"]), list(p.get("history", [])), tags)


def weight_average(cfg: Config, G: torch.nn.Module, ckpt: dict[str, Any] | None) -> GeneratorEMA | None:
    """The generator EMA (``train.ema_decay`` > 0), continued from the checkpoint when it has one."""
    if cfg.train.ema_decay <= 0:
        return None
    ema = GeneratorEMA(G, cfg.train.ema_decay)
    if ckpt is not None:
        if ckpt.get("generator_ema"):
            ema.load_state_dict(ckpt["generator_ema"])
        else:
            log.warning("the checkpoint has no generator EMA: the average restarts from the current weights")
    return ema


def check_finite(values: dict[str, float], step: int) -> None:
    bad = [k for k in ("loss_d", "loss_g") if not math.isfinite(values[k])]
    if bad:
        raise HistosynthError(f"training diverged: {bad} not finite at step {step}", "lower optim.lr_g/lr_d, keep optim.grad_clip > 0, or try loss.name=hinge")


def checkpoint_payload(run: Run, gan: GAN, ema: GeneratorEMA | None, source: BatchSource, epoch_metrics: EpochMetrics, window: MetricWindow, history: History) -> Callable[[LoopState], dict[str, Any]]:
    """``state -> payload``: everything :func:`restore` needs (format: :mod:`histosynth.gan.train.checkpoint`)."""

    def payload(state: LoopState) -> dict[str, Any]:
        mid = state.mid_epoch
        return {
            "config": run.cfg.to_dict(),
            "generator": gan.G.state_dict(),
            "discriminator": gan.D.state_dict(),
            "opt_g": gan.opt_g.state_dict(),
            "opt_d": gan.opt_d.state_dict(),
            "scaler_g": gan.step.scaler_g.state_dict(),
            "scaler_d": gan.step.scaler_d.state_dict(),
            **({"generator_ema": ema.state_dict()} if ema is not None else {}),
            **({"rl_eo": gan.rl.state_dict()} if gan.rl is not None else {}),
            **({"lecam": gan.step.lecam.state_dict()} if gan.step.lecam is not None else {}),
            "rng": rng_state(),
            "data": source.state_dict(),
            "progress": {
                "epoch": state.epoch,
                "step": state.step,
                "batch": state.batch,
                "perm": state.perm if mid else None,
                "epoch_sums": epoch_metrics.state(mid),
                "window_sums": window.meter.state(),  # the metric-logging window in progress
                "history": history.rows,
            },
            "run": {"run_id": run.run_id, "tracking_uri": run.uri, "manifest_hash": run.store.manifest_hash, "histosynth": histosynth.__version__},
        }

    return payload


def train(cfg: Config, resume: str | Path | None = None, *, progress: bool | None = None, similarity: Similarity | None = None) -> TrainResult:
    """Train a GAN (or, with ``method: ddpm``, the DDPM baseline: :mod:`histosynth.gan.train.ddpm`) as configured; with ``resume`` continue exactly from a checkpoint (new MLflow run, tagged
    with the run it continues). ``progress``: show a progress bar (None: only on a terminal).
    ``similarity``: the RL-EO similarity network to use instead of loading ``rl_eo.snn`` (tests, benchmarks).

    Raises :class:`~histosynth.errors.HistosynthError` (DataError, ConfigError, ServerError) for problems a
    user can fix: missing/corrupt store or checkpoint, a config that does not fit, an unreachable server.
    """
    validate(cfg)
    world, device = distributed.init(cfg.train.device)
    with determinism(device, cfg.train.deterministic):
        if cfg.method == "ddpm":
            if resume:
                raise ConfigError("--resume is not supported for method=ddpm", "start a new run (train.max_steps sets its length)")
            if world.parallel:
                raise ConfigError(f"method=ddpm under torchrun ({world.size} processes): the DDPM baseline trains in one process", "run `histosynth train` without torchrun")
            from histosynth.gan.train.ddpm import train_ddpm

            return train_ddpm(cfg, device, progress)
        return _train(cfg, resume, device, progress, similarity, world)


def _train(cfg: Config, resume: str | Path | None, device: torch.device, progress: bool | None, similarity: Similarity | None = None, world: World = World()) -> TrainResult:
    t_start = time.perf_counter()
    ckpt = load_checkpoint(resume) if resume else None  # every rank reads it: a path all processes can see
    amp = amp_for(device, cfg.train.amp, cfg.train.cpu_bf16)
    seed_everything(cfg.train.seed)
    # fail before loading data when the server is down; only rank 0 talks to MLflow
    uri, experiment_id = open_tracking(cfg) if world.is_main else ("", "")
    store, source = open_data(cfg, device, world)
    gan = build_gan(cfg, source, device, amp, similarity, world)
    z_fixed, y_fixed = fixed_inputs(cfg, gan.num_classes, device)
    start = restore(ckpt, resume, cfg, gan, source, store) if ckpt is not None else fresh_start(cfg, gan)
    noise_seed = world.noise_seed(cfg.train.seed, start.state.step)
    if noise_seed is not None:
        torch.manual_seed(noise_seed)
    ema = weight_average(cfg, gan.G, ckpt)  # before SyncBatchNorm: the average keeps plain BN (sampled on rank 0 alone)
    world.prepare(gan.G, gan.D)
    G_out = ema.model if ema is not None else gan.G  # what samples and the bundle use
    out = _run(cfg, world, device, amp, uri, experiment_id, store, source, gan, start, ema, G_out, (z_fixed, y_fixed), progress, t_start)
    return world.broadcast(out)


def _run(cfg: Config, world: World, device: torch.device, amp: Amp, uri: str, experiment_id: str, store: PatchStore, source: BatchSource, gan: GAN, start: Start, ema: GeneratorEMA | None, G_out: torch.nn.Module, fixed: tuple, progress: bool | None, t_start: float) -> TrainResult | None:
    """The MLflow run around the loop (rank 0; other ranks only train) -> the result (None on ranks > 0)."""

    class_freq = source.class_counts() if gan.num_classes else None

    def refresh_ema_stats() -> None:
        """The average's own batch-norm statistics before it is sampled or saved (see histosynth.gan.weight_ema)."""
        if ema is not None:
            with amp.autocast():
                # the class mix G trained on (its fakes take the real batch's labels), not uniform: the shared
                # batch norm's statistics depend on it (seed 0 of the demo: FID 148.1 -> 143.9, recall 0.15 -> 0.25)
                ema.standing_stats(cfg.model.latent_dim, gan.num_classes, seed=cfg.train.seed, class_freq=class_freq)

    step = (lambda batches: world.mean(gan.step(batches))) if world.parallel else gan.step
    gan.G.train()
    gan.D.train()
    if not world.is_main:
        TrainLoop(step, source, start.state, _worker_callbacks(cfg, gan, ema, start), group=cfg.optim.d_steps).run()
        return None

    with start_run(cfg, experiment_id) as mlrun:
        run = Run(cfg, uri, experiment_id, mlrun.info.run_id, resolve_out_dir(cfg, mlrun.info.run_id), store, source.classes, t_start)
        rl_tags = {"rl_eo.mode": gan.rl.mode, "rl_eo.reward_gradient": REWARD_GRADIENT[gan.rl.mode]} if gan.rl is not None else {}
        params = {"model.num_classes": gan.num_classes, "train.steps_per_epoch": gan.steps_per_epoch, "train.total_steps": gan.total_steps, "train.processes": world.size}
        record_start(run, device, amp, ema is not None, params, {**rl_tags, **start.tags})
        log.info("run %s on %s (amp %s, %d process(es)): %d steps/epoch, %d steps, out %s", run.run_id, device, amp.name, world.size, gan.steps_per_epoch, gan.total_steps, run.out_dir)

        callbacks, window, history, samples, checkpoints = _callbacks(run, gan, ema, source, start, progress, device, amp, G_out, fixed, refresh_ema_stats)
        state = TrainLoop(step, source, start.state, callbacks, group=cfg.optim.d_steps).run()

        refresh_ema_stats()
        final_samples = samples.grid("final.png")
        curve, rcurve = _curves(run, gan.rl, history.rows)
        bundle_path, wall = record_end(run, G_out, generator_spec(cfg, gan.num_classes), state.step, state.epoch, window.last, {"loss": cfg.loss.name})

    return result(
        run, device, amp, bundle=bundle_path, checkpoint=checkpoints.saved, samples=final_samples, loss_curve=curve, metrics={**window.last, "wall_s": wall},
        steps=state.step, epochs=state.epoch, wall_s=wall, reward_curve=rcurve,
    )  # fmt: skip


def _ema_update(gan: GAN, ema: GeneratorEMA | None) -> list[Callback]:
    return [EMAUpdate(ema, gan.G)] if ema is not None else []


def _window(cfg: Config, gan: GAN, start: Start, sinks: list[Callable]) -> MetricWindow:
    rl = gan.rl
    return MetricWindow(cfg.train.log_every, cfg.train.batch_size * cfg.optim.d_steps, sinks, check=check_finite, extra=rl.window_rewards if rl is not None else None, meter=start.window_meter)


def _worker_callbacks(cfg: Config, gan: GAN, ema: GeneratorEMA | None, start: Start) -> list[Callback]:
    """Data-parallel ranks > 0: the weight average and a metric window without sinks (its divergence check sees
    the ranks' mean losses, so every rank stops at the same step); no logging, samples or checkpoints."""
    return [*_ema_update(gan, ema), _window(cfg, gan, start, [])]


def _callbacks(run: Run, gan: GAN, ema: GeneratorEMA | None, source: BatchSource, start: Start, progress: bool | None, device: torch.device, amp: Amp, G_out: torch.nn.Module, fixed: tuple, refresh: Callable[[], None]) -> tuple[list[Callback], MetricWindow, History, SampleGrids, Checkpoints]:
    """The GAN run's callbacks, in hook order: weight average, epoch means, progress bar, metric window (MLflow,
    pushgateway, history, bar), sample grids, then checkpoints (so an epoch's checkpoint holds the refreshed average)."""
    cfg = run.cfg
    bar = Progress(progress, "train", postfix=CURVE_METRICS, redirect_logging=True)
    history = History(CURVE_METRICS, ("rl_eo/",), start.history)
    pusher = monitoring.from_env(run.run_id, cfg.method)  # Prometheus pushgateway when HISTOSYNTH_PUSHGATEWAY is set
    sinks = [mlflow_metrics, *([pushgateway(pusher, device)] if pusher is not None else []), history, bar]
    rl = gan.rl
    window = _window(cfg, gan, start, sinks)
    epoch_metrics = EpochMetrics(rl.epoch_rewards if rl is not None else None, start.epoch_meter)
    samples = SampleGrids(G_out, *fixed, run.out_dir / "samples", cfg.train.sample_every, amp, before=refresh)
    checkpoints = Checkpoints(run.out_dir / "checkpoints" / LAST, cfg.train.checkpoint_every, checkpoint_payload(run, gan, ema, source, epoch_metrics, window, history))
    callbacks = [*_ema_update(gan, ema), epoch_metrics, bar, window, samples, checkpoints]
    return callbacks, window, history, samples, checkpoints


def _curves(run: Run, rl: RLEOReward | None, history: list[dict[str, Any]]) -> tuple[Path | None, Path | None]:
    """The loss curve and, for RL-EO, the reward curve (PNG files, logged to MLflow); None without history."""
    import mlflow

    if not history:
        return None, None
    curve = loss_curve(history, run.out_dir / "loss_curve.png", title=f"{run.cfg.method} {run.run_id[:8]}")
    mlflow.log_artifact(str(curve), "plots")
    rcurve = None
    if rl is not None:
        rcurve = reward_curve(history, rl.classes, run.out_dir / "reward_curve.png", title=f"RL-EO reward (w={rl.weight}) {run.run_id[:8]}")
        mlflow.log_artifact(str(rcurve), "plots")
    return curve, rcurve
