"""Training the DDPM baseline (``method: ddpm``) in the GANs' harness: the same batches (data split, flips,
seed), one MLflow run with the config as params, the loss curve, sample grids from fixed noise, a checkpoint
and a generator bundle that ``histosynth evaluate`` scores and the registry registers like a GAN's.

The optimiser settings are the GANs' (``optim.lr_g``, betas, clipping); ``train.ema_decay`` averages the UNet
(Ho et al. sample from an EMA). Resuming and class conditioning are not supported for it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict

import torch

import histosynth
from histosynth.gan import bundle as bundle_mod
from histosynth import tracking
from histosynth.config import Config, config_hash
from histosynth.device import amp_for, describe, seed_everything
from histosynth.gan.weight_ema import GeneratorEMA
from histosynth.errors import ConfigError, HistosynthError
from histosynth.gan.nets.ddpm import build_ddpm
from histosynth.gan.train.checkpoint import LAST, save_checkpoint
from histosynth.data.loader import BatchSource, open_store
from histosynth.gan.train.plots import noise_loss_curve, sample_grid
from histosynth.gan.train.step import clip_and_norm
from histosynth.gan.train.trainer import MetricMeter, TrainResult, _default_run_name, _resolve_out_dir

log = logging.getLogger("histosynth.gan.train")
NOT_SERVED = "not exported or served: a DDPM sample is many UNet passes (score it with histosynth evaluate)"


def ddpm_spec(cfg: Config) -> dict:
    """The bundle spec: a generator of flat N(0, I) vectors of C*H*W values (x_T) -> images."""
    c, s = cfg.model.channels, cfg.data.image_size
    return {"arch": "ddpm", "image_size": s, "channels": c, "latent_dim": c * s * s, "num_classes": 0, **asdict(cfg.ddpm)}


def train_ddpm(cfg: Config, device: torch.device, progress: bool | None) -> TrainResult:
    import mlflow
    from tqdm.auto import tqdm

    if cfg.data.conditional:
        raise ConfigError("method=ddpm is unconditional, but data.conditional=true", "set data.conditional=false")
    t_start = time.perf_counter()
    amp = amp_for(device, cfg.train.amp, cfg.train.cpu_bf16)
    seed_everything(cfg.train.seed)
    uri = tracking.configure(cfg.tracking.tracking_uri)
    tracking.check_server(uri)
    experiment_id = tracking.ensure_experiment(cfg.tracking.experiment)
    store = open_store(cfg.data.root, cfg.data.split)
    source = BatchSource(store, batch_size=cfg.train.batch_size, image_size=cfg.data.image_size, device=device, seed=cfg.train.seed, hflip=cfg.data.hflip, vflip=cfg.data.vflip, classes=cfg.data.classes)
    steps_per_epoch = len(source)
    if steps_per_epoch < 1:
        raise ConfigError(f"no full batch of train.batch_size={cfg.train.batch_size} in the split", "lower train.batch_size")
    total_steps = cfg.train.epochs * steps_per_epoch
    if cfg.train.max_steps > 0:
        total_steps = min(total_steps, cfg.train.max_steps)

    spec = ddpm_spec(cfg)
    model = build_ddpm(spec).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr_g, betas=(cfg.optim.beta1, cfg.optim.beta2))
    scaler = amp.scaler()
    params = [p for p in model.parameters() if p.requires_grad]
    ema = GeneratorEMA(model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    G_out = ema.model if ema is not None else model
    z_fixed = torch.randn(cfg.train.n_samples, spec["latent_dim"], generator=torch.Generator().manual_seed(cfg.train.seed + 1_000_003)).to(device)

    with mlflow.start_run(experiment_id=experiment_id, run_name=cfg.tracking.run_name or _default_run_name(cfg), nested=mlflow.active_run() is not None) as run:
        run_id = run.info.run_id
        out_dir = _resolve_out_dir(cfg, run_id)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(cfg.to_yaml())
        tracking.log_params(cfg.flat())
        tracking.log_params({"model.num_classes": 0, "model.parameters": sum(p.numel() for p in params), "train.steps_per_epoch": steps_per_epoch, "train.total_steps": total_steps, "config.hash": config_hash(cfg)})
        tracking.log_data_manifest(store)
        mlflow.log_text(cfg.to_yaml(), "config.yaml")
        mlflow.set_tags({
            **{f"env.{k}": v for k, v in describe(device, amp).items()},
            "histosynth.version": histosynth.__version__, "histosynth.method": cfg.method, "histosynth.out_dir": str(out_dir),
            "histosynth.classes": ",".join(source.classes), "histosynth.generator_weights": f"ema({cfg.train.ema_decay})" if ema else "raw",
            "histosynth.sampler": f"DDIM eta=0, {cfg.ddpm.sample_steps} steps", "histosynth.serving": NOT_SERVED,
        })  # fmt: skip
        log.info("DDPM run %s on %s (amp %s): %d steps, out %s", run_id, device, amp.name, total_steps, out_dir)

        step, epoch, history, last = 0, 0, [], {}
        window, t_window = MetricMeter(), time.perf_counter()
        bar = tqdm(total=total_steps, disable=(None if progress is None else not progress), desc="train ddpm", unit="step", dynamic_ncols=True)
        model.train()
        try:
            while step < total_steps:
                for _, x, _ in source.batches(source.permutation()):
                    with amp.autocast():
                        loss = model.noise_loss(x)
                    opt.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.unscale_(opt)
                    norm = clip_and_norm(params, cfg.optim.grad_clip, cfg.optim.clip_mode)
                    scaler.step(opt)
                    scaler.update()
                    if ema is not None:
                        ema.update(model)
                    step += 1
                    bar.update(1)
                    window.add({"loss": loss.detach(), "grad_norm": norm.detach()})
                    if step % cfg.train.log_every == 0 or step == total_steps:
                        vals = {**window.means(), "img_per_s": window.count * cfg.train.batch_size / max(time.perf_counter() - t_window, 1e-9)}
                        if not math.isfinite(vals["loss"]):
                            raise HistosynthError(f"training diverged: the noise loss is not finite at step {step}", "lower optim.lr_g or keep optim.grad_clip > 0")
                        mlflow.log_metrics(vals, step=step)
                        history.append({"step": step, "loss": vals["loss"]})
                        last, window, t_window = vals, MetricMeter(), time.perf_counter()
                    if step >= total_steps:
                        break
                else:
                    epoch += 1
                    if cfg.train.sample_every > 0 and epoch % cfg.train.sample_every == 0 and step < total_steps:
                        mlflow.log_artifact(str(sample_grid(G_out, z_fixed, None, out_dir / "samples" / f"epoch_{epoch:04d}.png", amp)), "samples")
        finally:
            bar.close()

        ckpt = save_checkpoint(out_dir / "checkpoints" / LAST, {"config": cfg.to_dict(), "model": model.state_dict(), "opt": opt.state_dict(), **({"model_ema": ema.state_dict()} if ema else {}), "progress": {"step": step, "history": history}})
        mlflow.log_artifact(str(ckpt), "checkpoints")
        samples = sample_grid(G_out, z_fixed, None, out_dir / "samples" / "final.png", amp)
        mlflow.log_artifact(str(samples), "samples")
        curve = noise_loss_curve(history, out_dir / "loss_curve.png", title=f"ddpm {run_id[:8]}") if history else None
        if curve:
            mlflow.log_artifact(str(curve), "plots")
        extra = {"run_id": run_id, "tracking_uri": uri, "epoch": epoch, "step": step, "data_manifest_hash": store.manifest_hash, "method": cfg.method, "ema_decay": cfg.train.ema_decay, "histosynth": histosynth.__version__, "config": cfg.to_dict()}
        bundle_path = bundle_mod.save_generator(out_dir / "generator", G_out, spec, source.classes, extra)
        mlflow.log_artifact(str(bundle_path), "generator")
        mlflow.log_dict({"spec": spec, "classes": source.classes, "format": bundle_mod.FORMAT}, "generator/spec.json")
        wall = time.perf_counter() - t_start
        mlflow.log_metrics({**{f"final/{k}": v for k, v in last.items()}, "train/wall_s": wall, "train/steps": float(step), "train/epochs": float(epoch)}, step=step)
        mlflow.set_tag("histosynth.gan.bundle", str(bundle_path))

    return TrainResult(
        run_id=run_id, experiment_id=experiment_id, tracking_uri=uri, run_link=tracking.run_link(uri, experiment_id, run_id), out_dir=out_dir,
        bundle=bundle_path, checkpoint=ckpt, samples=samples, loss_curve=curve, metrics={**last, "wall_s": wall}, steps=step, epochs=epoch,
        wall_s=wall, device=str(device), amp=amp.name,
    )  # fmt: skip
