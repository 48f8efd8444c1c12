"""Every metric option and its default, in one place (as torch-fidelity's ``DEFAULTS``).

Evaluation passes these through ``histosynth.evaluation.metrics.compute(..., **options)``; unknown options are errors.
"""

from __future__ import annotations

DEFAULTS: dict[str, object] = {
    # FID
    "fid_method": "auto",  # auto|eigh: exact PSD route (factor + eigvalsh, or Gram/SVD when n <= dim); sqrtm: pytorch-fid's scipy route
    "fid_eps": 1e-6,  # sqrtm route only: diagonal offset added when the product is singular (pytorch-fid's value)
    # KID (Binkowski et al. 2018; as torch-fidelity / StyleGAN2-ADA)
    "kid_subsets": 100,
    "kid_subset_size": 1000,  # used: min(kid_subset_size, n_real, n_fake), for small medical sets
    "kid_degree": 3,
    "kid_gamma": None,  # None: 1 / dim
    "kid_coef0": 1.0,
    "kid_route": "auto",  # auto|gram|subsets: same value, cheaper route picked from the sizes
    "kid_dtype": "float32",  # dtype of the inner products only (kernel, sums, estimator: float64); float64: exact
    # improved precision/recall (Kynkäänniemi et al. 2019)
    "pr_k": 3,
    # density/coverage (Naeem et al. 2020; their recommended k)
    "dc_k": 5,
    # Inception Score
    "is_splits": 10,
    # CMMD (Jayasumana et al. 2024; the reference code's constants)
    "cmmd_sigma": 10.0,
    "cmmd_scale": 1000.0,
    "cmmd_normalize": True,  # L2-normalise embeddings first, as the reference does for CLIP
    # PPL (Karras et al. 2019); see histosynth.evaluation.metrics.ppl for the distance used
    "ppl_samples": 1000,  # latent pairs (StyleGAN: 100k; CPU: ~20-40 ms per pair at 64 px with vgg16)
    "ppl_epsilon": 1e-4,
    "ppl_interp": "slerp",  # slerp|lerp
    "ppl_sampling": "full",  # full: t ~ U(0, 1); end: t = 0
    "ppl_distance": "vgg16",  # vgg16 (ImageNet weights) | untrained-vgg16 (labelled fallback) | pixel
    "ppl_weights": None,  # VGG-16 weights file (default: $HISTOSYNTH_VGG16 / cache / checksummed download)
    "ppl_batch": 64,
    # shared
    "seed": 0,  # KID subset sampling (np.random.RandomState, same draws as torch-fidelity for the same seed)
    "device": "auto",  # where the big matrix products run (float64)
    "block_elems": 1 << 24,  # pairwise-distance/kernel blocks of at most this many float64 entries (128 MiB)
}
