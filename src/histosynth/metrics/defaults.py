"""Every metric option and its default, in one place (as torch-fidelity's ``DEFAULTS``).

Evaluation passes these through ``histosynth.metrics.compute(..., **options)``; unknown options are errors.
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
    # shared
    "seed": 0,  # KID subset sampling (np.random.RandomState, same draws as torch-fidelity for the same seed)
    "device": "auto",  # where the big matrix products run (float64)
    "block_elems": 1 << 24,  # pairwise-distance/kernel blocks of at most this many float64 entries (128 MiB)
}
