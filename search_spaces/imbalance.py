"""Is the strided model's failure the class imbalance? The seed ablation's two models, each
trained with every class_balance setting (docs/STATISTICS.md, class imbalance remedies)."""

from ray import tune

from tune_cilp.experiment.space import SearchSpace
from tune_cilp.fusion.variants import DOWNSAMPLES
from tune_cilp.training.trial_config import CLASS_BALANCES

SPACE = SearchSpace(
    name="imbalance",
    description=(
        "The seed ablation (concat, MaxPool2d vs stride-2) × class_balance none / pos_weight "
        "(BCE weighted cubes:spheres) / sampler (class-balanced batches), seed protocol."
    ),
    param_space={
        "variant": "concat",
        "downsample": tune.grid_search(list(DOWNSAMPLES)),
        "class_balance": tune.grid_search(list(CLASS_BALANCES)),
    },
)
