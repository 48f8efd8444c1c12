"""`histosynth synth`: request images from a served generator and write PNGs + manifest.json."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from histosynth.cli import app
from histosynth.cli.common import ForceOpt, out


@app.command()
def synth(
    n: int = typer.Option(64, "--n", help="Number of images (at most $HISTOSYNTH_SYNTH_MAX, default 50000)."),
    seed: int = typer.Option(0, "--seed", help="Seed: image i uses the latent drawn from (seed, i), whatever the batch split."),
    class_name: Optional[str] = typer.Option(None, "--class", help="Class name for a conditional model (default: classes in turn)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Output folder for the PNGs and manifest.json."),
    url: Optional[str] = typer.Option(None, "--url", help="Triton HOST:PORT (default localhost:8000 for http, localhost:8001 for grpc)."),
    protocol: str = typer.Option("http", "--protocol", help="http or grpc."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Served model name (default: the only model on the server)."),
    model_version: str = typer.Option("", "--model-version", help="Served model version (default: the server's choice)."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Images per request (default: min(32, the model's max_batch_size); an explicit larger value is an error)."),
    force: bool = ForceOpt,
) -> None:
    """Generate N images from a Triton-served generator."""
    import time

    from histosynth import __version__
    from histosynth.files.outputs import check_dir
    from histosynth.serving.client import GeneratorClient, check_request, synthesize, write_pngs

    check_request(n, seed, batch)
    check_dir(out_dir, marker="manifest.json", names=("*.png",), force=force)
    t0 = time.perf_counter()
    with GeneratorClient(url, protocol=protocol, model=model, model_version=model_version) as client:  # type: ignore[arg-type]
        result = synthesize(client, n, seed, class_name=class_name, batch=batch)
        info = client.info
        manifest = {
            "histosynth_version": __version__,
            "url": client.url,
            "protocol": protocol,
            "seed": seed,
            "class": class_name,
            "classes": info.classes,
            "batch": batch or min(32, info.max_batch_size or 32),
            "max_batch_size": info.max_batch_size,
            "image_size": info.image_size,
            "latents": "z_i = numpy PCG64(SeedSequence([seed, i])).standard_normal(latent_dim, float32)",
            "latent_dim": info.latent_dim,
        }
    path = write_pngs(result, out_dir, manifest)
    dt = time.perf_counter() - t0
    out.print(f"[bold green]wrote[/] {n} images from {result.model} v{result.model_version} to {out_dir} in {dt:.2f} s ({n / dt:.0f} img/s)", soft_wrap=True)
    out.print(f"  manifest {path}", soft_wrap=True)
