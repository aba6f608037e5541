"""Every fusion strategy in the model registry, each with maxpool and strided downsampling, on
the seed's protocol (TrainConfig's defaults)."""

from ray import tune

from tune_cilp.experiment.space import SearchSpace
from tune_cilp.fusion.variants import DOWNSAMPLES, fusion_variants

SPACE = SearchSpace(
    name="fusion",
    description=(
        f"Fusion strategies {', '.join(fusion_variants())}, each with maxpool and strided "
        f"downsampling ({len(fusion_variants()) * len(DOWNSAMPLES)} trials per seed), "
        "seed protocol."
    ),
    param_space={
        "variant": tune.grid_search(fusion_variants()),
        "downsample": tune.grid_search(list(DOWNSAMPLES)),
    },
)
