"""Training the DDPM baseline (``method: ddpm``) in the GANs' harness: the same batches (data split, flips,
seed), the same loop and callbacks (:mod:`histosynth.gan.train.callbacks`), one MLflow run with the config as
params, the loss curve, sample grids from fixed noise, a checkpoint and a generator bundle that
``histosynth evaluate`` scores and the registry registers like a GAN's.

The optimiser settings are the GANs' (``optim.lr_g``, betas, clipping); ``train.ema_decay`` averages the UNet
(Ho et al. sample from an EMA). Resuming and class conditioning are not supported for it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from typing import Any

import torch

from histosynth.config import Config
from histosynth.device import Amp, amp_for, seed_everything
from histosynth.errors import ConfigError, HistosynthError
from histosynth.gan.nets.ddpm import build_ddpm
from histosynth.gan.train.callbacks import Checkpoints, EMAUpdate, History, MetricWindow, Progress, SampleGrids, mlflow_metrics
from histosynth.gan.train.checkpoint import LAST
from histosynth.gan.train.loop import LoopState, TrainLoop
from histosynth.gan.train.plots import noise_loss_curve
from histosynth.gan.train.runs import Run, TrainResult, open_data, open_tracking, record_end, record_start, resolve_out_dir, result, start_run
from histosynth.gan.train.step import clip_and_norm
from histosynth.gan.weight_ema import GeneratorEMA

log = logging.getLogger("histosynth.gan.train")
NOT_SERVED = "not exported or served: a DDPM sample is many UNet passes (score it with histosynth evaluate)"


def ddpm_spec(cfg: Config) -> dict:
    """The bundle spec: a generator of flat N(0, I) vectors of C*H*W values (x_T) -> images."""
    c, s = cfg.model.channels, cfg.data.image_size
    return {"arch": "ddpm", "image_size": s, "channels": c, "latent_dim": c * s * s, "num_classes": 0, **asdict(cfg.ddpm)}


class DDPMStep:
    """One UNet update on the noise-prediction loss (AMP, loss scaling, clipping as the GANs'); the loop's step."""

    def __init__(self, model: torch.nn.Module, opt: torch.optim.Optimizer, amp: Amp, grad_clip: float, clip_mode: str):
        self.model, self.opt, self.amp = model, opt, amp
        self.grad_clip, self.clip_mode = grad_clip, clip_mode
        self.scaler = amp.scaler()
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __call__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        ((x, _),) = batches
        with self.amp.autocast():
            loss = self.model.noise_loss(x)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        norm = clip_and_norm(self.params, self.grad_clip, self.clip_mode)
        self.scaler.step(self.opt)
        self.scaler.update()
        return {"loss": loss.detach(), "grad_norm": norm.detach()}


def check_finite(values: dict[str, float], step: int) -> None:
    if not math.isfinite(values["loss"]):
        raise HistosynthError(f"training diverged: the noise loss is not finite at step {step}", "lower optim.lr_g or keep optim.grad_clip > 0")


def train_ddpm(cfg: Config, device: torch.device, progress: bool | None) -> TrainResult:
    if cfg.data.conditional:
        raise ConfigError("method=ddpm is unconditional, but data.conditional=true", "set data.conditional=false")
    t_start = time.perf_counter()
    amp = amp_for(device, cfg.train.amp, cfg.train.cpu_bf16)
    seed_everything(cfg.train.seed)
    uri, experiment_id = open_tracking(cfg)
    store, source = open_data(cfg, device)
    steps_per_epoch = len(source)
    if steps_per_epoch < 1:
        raise ConfigError(f"no full batch of train.batch_size={cfg.train.batch_size} in the split", "lower train.batch_size")
    total_steps = cfg.train.epochs * steps_per_epoch
    if cfg.train.max_steps > 0:
        total_steps = min(total_steps, cfg.train.max_steps)

    spec = ddpm_spec(cfg)
    model = build_ddpm(spec).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr_g, betas=(cfg.optim.beta1, cfg.optim.beta2))
    step = DDPMStep(model, opt, amp, cfg.optim.grad_clip, cfg.optim.clip_mode)
    ema = GeneratorEMA(model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    G_out = ema.model if ema is not None else model
    z_fixed = torch.randn(cfg.train.n_samples, spec["latent_dim"], generator=torch.Generator().manual_seed(cfg.train.seed + 1_000_003)).to(device)

    with start_run(cfg, experiment_id) as mlrun:
        run = Run(cfg, uri, experiment_id, mlrun.info.run_id, resolve_out_dir(cfg, mlrun.info.run_id), store, source.classes, t_start)
        params = {"model.num_classes": 0, "model.parameters": sum(p.numel() for p in step.params), "train.steps_per_epoch": steps_per_epoch, "train.total_steps": total_steps}
        record_start(run, device, amp, ema is not None, params, {"histosynth.sampler": f"DDIM eta=0, {cfg.ddpm.sample_steps} steps", "histosynth.serving": NOT_SERVED})
        log.info("DDPM run %s on %s (amp %s): %d steps, out %s", run.run_id, device, amp.name, total_steps, run.out_dir)

        history = History(("loss",))
        window = MetricWindow(cfg.train.log_every, cfg.train.batch_size, [mlflow_metrics, history], check=check_finite)
        samples = SampleGrids(G_out, z_fixed, None, run.out_dir / "samples", cfg.train.sample_every, amp, last_epoch=False)  # the final grid follows
        checkpoints = Checkpoints(run.out_dir / "checkpoints" / LAST, 0, lambda state: _payload(cfg, model, opt, ema, state, history.rows))
        callbacks = [*([EMAUpdate(ema, model)] if ema is not None else []), Progress(progress, "train ddpm"), window, samples, checkpoints]
        model.train()
        state = TrainLoop(step, source, LoopState(total_steps, cfg.train.epochs, steps_per_epoch), callbacks).run()

        final_samples = samples.grid("final.png")
        curve = _curve(run, history.rows)
        bundle_path, wall = record_end(run, G_out, spec, state.step, state.epoch, window.last, {})

    return result(
        run, device, amp, bundle=bundle_path, checkpoint=checkpoints.saved, samples=final_samples, loss_curve=curve, metrics={**window.last, "wall_s": wall},
        steps=state.step, epochs=state.epoch, wall_s=wall,
    )  # fmt: skip


def _payload(cfg: Config, model: torch.nn.Module, opt: torch.optim.Optimizer, ema: GeneratorEMA | None, state: LoopState, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The DDPM checkpoint: weights, optimiser and history (enough to inspect a run, not to resume it)."""
    return {"config": cfg.to_dict(), "model": model.state_dict(), "opt": opt.state_dict(), **({"model_ema": ema.state_dict()} if ema else {}), "progress": {"step": state.step, "history": history}}


def _curve(run: Run, history: list[dict[str, Any]]):
    import mlflow

    if not history:
        return None
    curve = noise_loss_curve(history, run.out_dir / "loss_curve.png", title=f"ddpm {run.run_id[:8]}")
    mlflow.log_artifact(str(curve), "plots")
    return curve
