"""Every fusion strategy, each with maxpool and strided downsampling, on the seed protocol."""

from ray import tune

from search_spaces import SEED_PROTOCOL, SearchSpace

SPACE = SearchSpace(
    name="fusion",
    description=(
        "Fusion strategies late, concat, add, hadamard and early, each with maxpool and "
        "strided downsampling (10 trials per seed), seed protocol."
    ),
    param_space={
        "variant": tune.grid_search(["late", "concat", "add", "hadamard", "early"]),
        "downsample": tune.grid_search(["maxpool", "stride"]),
        **SEED_PROTOCOL,
    },
)
