"""The seed notebook's comparison: concat intermediate fusion, maxpool vs strided downsampling."""

from ray import tune

from tune_cilp.experiment.space import SearchSpace
from tune_cilp.fusion.variants import DOWNSAMPLES

SPACE = SearchSpace(
    name="seed-ablation",
    description=(
        "The seed notebook's comparison: concat intermediate fusion with MaxPool2d vs stride-2 "
        "convolutions, seed protocol (Adam 1e-3, cosine to 1e-6, batch 32, 50 epochs, seed 51)."
    ),
    param_space={"variant": "concat", "downsample": tune.grid_search(list(DOWNSAMPLES))},
)
