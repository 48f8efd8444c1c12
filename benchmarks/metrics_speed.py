"""FID + KID speed and agreement: histosynth.evaluation.metrics vs torch-fidelity (and pytorch-fid's FID) on the same features.

Both sides get the same N real + N fake Inception-like feature sets (2048-d, non-negative, correlated) and the same
settings (KID: 100 subsets of min(1000, N), cubic kernel, same subset draws); the sides run in turn each round and
the best of --repeat wall-clock times is kept (fair on a shared, busy machine); value differences are reported.
A third column times histosynth with the real statistics given, as evaluate_generator does from its cache. torch-fidelity gets float32 features, as its
extractor produces; histosynth gets float64 (its extractors' output; the network itself runs in float32).

    .venv/bin/python benchmarks/metrics_speed.py --n 1000,5000 --repeat 2 --markdown

``--images K`` adds an end-to-end row: K 64x64 tiles through the FID Inception (ours vs torch-fidelity's extractor
with the same weights ported; same network, so the ratio shows preprocessing/overhead only). Needs the weights.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch


def make_features(n: int, dim: int, seed: int, shift: float) -> np.ndarray:
    """Low-rank correlated, non-negative, Inception-pool-like features (float32-representable, like a network's)."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(1234).standard_normal((256, dim)) / 16.0
    z = rng.standard_normal((n, 256))
    x = np.maximum(z @ basis + 0.2 * rng.standard_normal((n, dim)) + 0.3 + shift, 0.0)
    return x.astype(np.float32).astype(np.float64)


def best_of(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def ours(real, fake, subsets, subset_size, seed, real_stats=None):
    from histosynth.evaluation import metrics

    values, _ = metrics.compute(["fid", "kid"], real, fake, kid_subsets=subsets, kid_subset_size=subset_size, seed=seed, device="cpu", real_stats=real_stats)
    return values["fid"], values["kid_mean"], values["kid_std"]


def interleaved(fns: dict, repeat: int) -> dict:
    """Best-of-``repeat`` wall time per function, running them in turn each round (fair under drifting load)."""
    times = {k: [] for k in fns}
    outs = {}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            outs[k] = fn()
            times[k].append(time.perf_counter() - t0)
    return {k: (min(v), outs[k]) for k, v in times.items()}


def torch_fidelity(real32, fake32, subsets, subset_size, seed):
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    fid = fid_statistics_to_metric(fid_features_to_statistics(real32), fid_features_to_statistics(fake32), verbose=False)[KEY_METRIC_FID]
    m = min(subset_size, len(real32), len(fake32))
    kid = kid_features_to_metric(
        fake32, real32, kid_subsets=subsets, kid_subset_size=m, kid_kernel="poly", kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1, rng_seed=seed, verbose=False,
    )  # fmt: skip
    return fid, kid[KEY_METRIC_KID_MEAN], kid[KEY_METRIC_KID_STD]


def pytorch_fid(real, fake):
    from pytorch_fid.fid_score import calculate_frechet_distance

    return calculate_frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))


def end_to_end(k: int, repeat: int) -> dict:
    import tempfile
    from pathlib import Path

    from skimage import data
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from histosynth.evaluation.features import DEFAULT, get_extractor
    from histosynth.files.pretrained import inception_weights

    here = Path(__file__).resolve().parent.parent / "tests" / "metrics" / "conftest.py"
    import importlib.util

    spec = importlib.util.spec_from_file_location("metrics_conftest", here)
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    im = data.immunohistochemistry()
    tiles = np.stack([im[(i * 37) % 448 : (i * 37) % 448 + 64, (i * 91) % 448 : (i * 91) % 448 + 64] for i in range(k)])
    ext = get_extractor(DEFAULT, "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ported.pth"
        torch.save(conf.port_default1_state_dict(inception_weights()), path)
        theirs_net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).contiguous()
    t_ours, f_ours = best_of(lambda: ext.extract(tiles, batch_size=32), repeat)

    def theirs():
        with torch.no_grad():
            return torch.cat([theirs_net(x[i : i + 32])[0] for i in range(0, k, 32)]).double().numpy()

    t_theirs, f_theirs = best_of(theirs, repeat)
    return {"images": k, "ours_s": t_ours, "torch_fidelity_s": t_theirs, "max_abs_feature_diff": float(np.abs(f_ours - f_theirs).max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="1000,5000", help="comma-separated set sizes (real = fake = N)")
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--subsets", type=int, default=100)
    ap.add_argument("--subset-size", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--pytorch-fid", action="store_true", help="also time pytorch-fid's sqrtm FID (slow)")
    ap.add_argument("--images", type=int, default=0, help="also run K images end to end through the FID Inception")
    ap.add_argument("--json", default="", help="write the results here")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = ap.parse_args()

    rows = []
    for n in [int(v) for v in args.n.split(",") if v]:
        real, fake = make_features(n, args.dim, 1, 0.0), make_features(n, args.dim, 2, 0.05)
        real32, fake32 = torch.from_numpy(real).float(), torch.from_numpy(fake).float()
        from histosynth.evaluation.metrics._linalg import as_tensor, mean_cov

        stats = mean_cov(as_tensor(real, "cpu"))  # what evaluate_generator reads from its feature cache
        res = interleaved(
            {
                "ours": lambda: ours(real, fake, args.subsets, args.subset_size, args.seed),
                "ours_cached": lambda: ours(real, fake, args.subsets, args.subset_size, args.seed, real_stats=stats),
                "tf": lambda: torch_fidelity(real32, fake32, args.subsets, args.subset_size, args.seed),
            },
            args.repeat,
        )
        t_o, (fid_o, kid_o, kstd_o) = res["ours"]
        t_c, _ = res["ours_cached"]
        t_t, (fid_t, kid_t, kstd_t) = res["tf"]
        row = {
            "n": n, "dim": args.dim, "ours_s": t_o, "ours_cached_real_stats_s": t_c, "torch_fidelity_s": t_t, "speedup": t_t / t_o,
            "fid_ours": fid_o, "fid_torch_fidelity": fid_t, "abs_dfid": abs(fid_o - fid_t),
            "kid_ours": kid_o, "kid_torch_fidelity": kid_t, "abs_dkid": abs(kid_o - kid_t), "rel_dkid": abs(kid_o - kid_t) / abs(kid_t),
        }  # fmt: skip
        if args.pytorch_fid:
            t_p, fid_p = best_of(lambda: pytorch_fid(real, fake), 1)
            row.update(pytorch_fid_fid_s=t_p, fid_pytorch_fid=fid_p, abs_dfid_pytorch_fid=abs(fid_o - fid_p))
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"rows": rows, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    if args.images:
        result["end_to_end"] = end_to_end(args.images, args.repeat)
        print(json.dumps(result["end_to_end"]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    if args.markdown:
        print("\n| N real = N fake (2048-d) | histosynth FID+KID (s) | torch-fidelity FID+KID (s) | speed-up | histosynth, real stats cached (s) | FID | abs dFID | KID | rel dKID |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['n']} | {r['ours_s']:.2f} | {r['torch_fidelity_s']:.2f} | {r['speedup']:.1f}x | {r['ours_cached_real_stats_s']:.2f} | {r['fid_ours']:.4f} | {r['abs_dfid']:.1e} | {r['kid_ours']:.5f} | {r['rel_dkid']:.1e} |")
        if args.pytorch_fid:
            for r in rows:
                print(f"\npytorch-fid (scipy sqrtm) FID only, N={r['n']}: {r['pytorch_fid_fid_s']:.2f} s, abs dFID vs histosynth {r['abs_dfid_pytorch_fid']:.1e}")
        if args.images:
            e = result["end_to_end"]
            print(f"\nend to end, {e['images']} 64x64 tiles through the FID Inception on CPU: histosynth {e['ours_s']:.2f} s, torch-fidelity {e['torch_fidelity_s']:.2f} s, max |feature diff| {e['max_abs_feature_diff']:.1e}")


if __name__ == "__main__":
    main()
