"""`histosynth train`: train a GAN from a preset, tracked in MLflow."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from histosynth.cli import app
from histosynth.cli.common import ConfigOpt, DryRunOpt, SetOpt, out, print_config, resolve

ResumeOpt = typer.Option(None, "--resume", "-r", help="Continue exactly from a checkpoint (.pt, or a run's checkpoints/ folder). Without --config the checkpoint's own config is used; -s overrides apply on top (e.g. -s train.epochs=50).")
ProgressOpt = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: only on a terminal).")
ResultOpt = typer.Option(None, "--result-json", help="Also write the run's result (run id, metrics, bundle path...) as JSON here, from rank 0 only (a launcher such as torchrun runs this command in several processes).")


@app.command()
def train(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    resume: Optional[Path] = ResumeOpt,
    dry_run: bool = DryRunOpt,
    progress: Optional[bool] = ProgressOpt,
    result_json: Optional[Path] = ResultOpt,
) -> None:
    """Train a GAN (DCGAN by default) on a patch split; every run is tracked in MLflow."""
    from histosynth.files.atomic import write_json
    from histosynth.gan.train.trainer import config_from_checkpoint, train as run_training

    if resume is not None and config is None:
        cfg = config_from_checkpoint(resume, set_ or [])
        if dry_run:
            print_config(cfg)
            return
    else:
        cfg = resolve(config, set_, dry_run)
        if cfg is None:
            return
    from histosynth.distributed import env_world

    main = env_world()[0] == 0  # under torchrun only rank 0 reports (every rank returns its result)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("histosynth").setLevel(logging.INFO if main else logging.WARNING)
    result = run_training(cfg, resume=resume, progress=progress if main else False)
    if not main:
        return
    if result_json is not None:
        write_json(result_json, result.to_dict())
    m = result.metrics
    out.print(f"[bold green]done[/] {result.steps} steps / {result.epochs} epochs in {result.wall_s:.1f} s on {result.device} (amp {result.amp})", soft_wrap=True)
    if "loss_d" in m:
        out.print(f"  last losses   loss_d={m['loss_d']:.4f} loss_g={m['loss_g']:.4f} d_real={m['d_real']:.3f} d_fake={m['d_fake']:.3f}", soft_wrap=True)
    out.print(f"  run id        {result.run_id}", soft_wrap=True)
    out.print(f"  MLflow        {result.tracking_uri}", soft_wrap=True)
    out.print(f"  view          {result.run_link}", soft_wrap=True)
    out.print(f"  out dir       {result.out_dir}", soft_wrap=True)
    out.print(f"  samples       {result.samples}", soft_wrap=True)
    if result.loss_curve:
        out.print(f"  loss curve    {result.loss_curve}", soft_wrap=True)
    out.print(f"  checkpoint    {result.checkpoint}", soft_wrap=True)
    out.print(f"  generator     {result.bundle}  (MLflow artifact generator/)", soft_wrap=True)
