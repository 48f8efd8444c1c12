from kfp import dsl
from kfp.dsl import Dataset, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def prepare_data(
    splits: Output[Dataset],
    data_repo: str = "",
    data_rev: str = "",
    data_path: str = "data/splits",
    patch_size: int = 64,
    stride: int = 64,
    min_tissue: float = 0.5,
    region: int = 256,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
):
    """DVC-versioned splits from `data_repo` at `data_rev`, or the embedded sample data when no repo is given."""
    from histosynth.stages import prepare_splits

    info = prepare_splits(
        splits.path,
        data_repo=data_repo,
        data_rev=data_rev,
        data_path=data_path,
        patch={"size": patch_size, "stride": stride, "min_tissue": min_tissue, "region": region},
        split={"val": val, "test": test, "seed": seed},
    )
    splits.metadata.update({"counts": info["counts"], "classes": info["classes"], "data_repo": data_repo, "data_rev": data_rev})
