"""Hyperparameter search over every fusion variant: Optuna TPE under ASHA early stopping."""

from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from tune_cilp.data import DEFAULT_SEED
from tune_cilp.experiment.space import SearchSpace
from tune_cilp.fusion.variants import DOWNSAMPLES, fusion_variants


def _asha(epochs: int) -> ASHAScheduler:
    # Rungs at 1, 2, 4, ... epochs; the worse half of trials at each rung stop there.
    return ASHAScheduler(
        time_attr="training_iteration", max_t=epochs, grace_period=1, reduction_factor=2
    )


def _tpe() -> OptunaSearch:
    return OptunaSearch(seed=DEFAULT_SEED)  # OptunaSearch's default sampler is TPE


SPACE = SearchSpace(
    name="hpo",
    description=(
        "Learning rate (log-uniform), batch size, weight decay and downsampling for each fusion "
        "variant, sampled by Optuna TPE with ASHA stopping weak trials early on val_loss."
    ),
    param_space={
        "variant": tune.choice(fusion_variants()),
        "downsample": tune.choice(list(DOWNSAMPLES)),
        "lr": tune.loguniform(1e-4, 3e-3),
        "batch_size": tune.choice([16, 32, 64]),
        "weight_decay": tune.loguniform(1e-6, 1e-2),
    },
    num_samples=20,
    epochs=30,
    make_scheduler=_asha,
    make_search_alg=_tpe,
    grid_seeds=False,
)
