"""Every fusion strategy in the model registry, each with maxpool and strided downsampling, on
the seed's protocol (TrainConfig's defaults)."""

from ray import tune

from search_spaces import SearchSpace
from tune_cilp.models import DOWNSAMPLES, list_variants

SPACE = SearchSpace(
    name="fusion",
    description=(
        f"Fusion strategies {', '.join(list_variants())}, each with maxpool and strided "
        f"downsampling ({len(list_variants()) * len(DOWNSAMPLES)} trials per seed), seed protocol."
    ),
    param_space={
        "variant": tune.grid_search(list_variants()),
        "downsample": tune.grid_search(list(DOWNSAMPLES)),
    },
)
