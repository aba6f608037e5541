"""A fusion space (or a --replicate space) as one Ray Tune experiment: its param space over
TrainConfig's defaults, then the driver's lifecycle (tune_cilp/experiment/driver.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ray.tune.search.sample import Domain
from ray.tune.search.variant_generator import generate_variants

from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import STATUS_COLUMNS, majority_rate
from tune_cilp.data import CilpArrays, held_out_mask
from tune_cilp.experiment.driver import (
    Outcome,
    TuneExperiment,
    drive,
    prepare,
)
from tune_cilp.experiment.race_search import RacePlan, current, fresh
from tune_cilp.experiment.request import RunRequest
from tune_cilp.experiment.run_settings import (
    PACKED_SEEDS,
    num_samples,
    run_epochs,
    unpacked,
    with_run_settings,
)
from tune_cilp.experiment.space import SearchSpace, check_param_space
from tune_cilp.experiment.trial import run_trial
from tune_cilp.fusion.fusion_config import TrainConfig
from tune_cilp.fusion.variants import forward_flops, variant_name

PARAMETER_COLUMNS = ["variant", "downsample", "seed"]
# With --pack a trial's config names its seeds instead of one (Ray's --verbose table looks up
# every column in every config: a missing one is a KeyError)
PACKED_COLUMNS = ["variant", "downsample", PACKED_SEEDS]


def train_fusion(
    config: dict[str, Any],
    data: CilpArrays,
    wandb_kwargs: dict[str, str] | None = None,
    checkpoint_every: int | None = None,
) -> None:
    """Train one fusion variant; report every epoch with a checkpoint holding the full Trainer
    state.

    ``config`` holds TrainConfig fields (and, with --pack, the packed seeds); ``data``,
    ``wandb_kwargs`` (arguments for ``setup_wandb``, None = no W&B) and ``checkpoint_every``
    (--checkpoint-every) arrive through ``tune.with_parameters`` (Ray's object store), so a
    trial needs no files or database on its node.
    """
    from tune_cilp.fusion.fusion_trainer import Trainer
    from tune_cilp.fusion.packed import PackedTrial, packed_configs

    cfg = TrainConfig.from_dict(unpacked(config))
    test = cfg.held_out(data)
    validation = ~data.is_train if test is None else ~data.is_train & ~test
    info = {
        "variant_name": variant_name(config),
        "val_majority_rate": majority_rate(data.labels[validation]),
    }
    seeds = config.get(PACKED_SEEDS)
    if seeds is not None:  # --pack: these seeds in one trial

        def make() -> Any:
            return PackedTrial(packed_configs(cfg, seeds), data)
    else:

        def make() -> Any:
            return Trainer(cfg, data)

    run_trial(make, config, wandb_kwargs, info, checkpoint_every)


def trial_costs(params: Mapping[str, Any], num_samples: int) -> list[float]:
    """Relative cost of each trial of a param space: forward FLOPs per sample of its model x its
    epochs (training is ~3x forward for every model, so the factor cancels). A space that
    samples (a search) has configurations not known yet: its trials count as equal."""
    if any(isinstance(v, Domain) for v in params.values()):
        return [1.0] * num_samples
    costs = []
    for _, config in generate_variants(dict(params)):
        cfg = TrainConfig.from_dict(unpacked(config))
        seeds = len(config.get(PACKED_SEEDS) or [cfg.seed])  # a pack trains its seeds' work
        costs.append(float(forward_flops(cfg.model_config)) * cfg.epochs * seeds)
    return costs * num_samples


def param_space(
    space: SearchSpace,
    epochs: int,
    seeds: list[int] | None,
    precision: str | None = None,
    test_fraction: float | None = None,
    pack: int | None = None,
) -> dict[str, Any]:
    """The space's param space with the run's epochs, precision, test fraction and seeds (a
    grid over seeds, or over packs of `pack` seeds), over TrainConfig's defaults, so that every
    trial's config names its whole protocol."""
    if seeds is not None and not space.grid_seeds:
        raise UserError(
            f"--seeds: space {space.name!r} samples its configurations; "
            "rerun its best configuration per seed instead"
        )
    params = {**TrainConfig().to_dict(), **space.param_space}
    params = with_run_settings(params, epochs=epochs, precision=precision, seeds=seeds, pack=pack)
    if test_fraction is not None:
        params["test_fraction"] = test_fraction
    return params


def run_params(request: RunRequest, space: SearchSpace) -> dict[str, Any]:
    """The run's param space: the space's over TrainConfig's defaults with the run's settings,
    every configuration it can generate checked."""
    fraction = request.test_fraction
    if request.replicate:  # the replicate space fixes its epochs; --epochs is in its points
        params = param_space(space, space.epochs, None, request.precision, fraction)
    else:
        epochs = run_epochs(request, space.epochs)
        params = param_space(
            space, epochs, request.seed_list, request.precision, fraction, request.pack
        )
    check_param_space(space.name, params, lambda config: TrainConfig.from_dict(unpacked(config)))
    return params


def is_grid(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"grid_search"}


def variant_configs(params: Mapping[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each configuration of a grid param space: (its grid values, its whole config)."""
    out = []
    for resolved, config in generate_variants(dict(params)):
        grid = {path[0]: value for path, value in resolved.items()}
        out.append((grid, config))
    return out


def run_fusion(
    request: RunRequest,
    space: SearchSpace,
    trainable: Callable[..., None],
    race: RacePlan | None = None,
    **identity_extra: Any,
) -> Outcome:
    """Check the space's every configuration, load the data, and run or resume the experiment.

    trainable: the Tune function trainable (train_fusion, or a wrapper
    of it: how the tests inject failing trials). race: --race's plan (its variants' configs
    are the space's, the seeds the race's). identity_extra: ExperimentMeta fields of the
    run (--replicate's source and picks)."""
    params = run_params(request, space)
    samples = num_samples(request, space.num_samples)
    costs = trial_costs(params, samples)
    search_alg, dirnames = space.make_search_alg(), None
    if race is not None:
        params = {k: v for k, v in params.items() if not is_grid(v)}  # the searcher's to set
        costs = [c for config in race.configs.values() for c in trial_costs(config, 1)]
        costs, samples = costs * race.first_trials, -1  # the searcher says when it is done
        search_alg = fresh(race, request.experiment, params["epochs"], space.metric, space.mode)
        dirnames = current().dirname_of
        identity_extra["race"] = race.record
    fraction = request.test_fraction
    data, meta = prepare(
        request, epochs=params["epochs"], samples=num_samples(request, space.num_samples),
        **identity_extra,
    )  # fmt: skip
    if fraction is not None:  # here, in one line, rather than in every trial
        held_out_mask(data.labels, data.is_train, fraction, name="--test-fraction")
    experiment = TuneExperiment(
        location=request.location,
        label=f"experiment {request.experiment}",
        trainable=trainable,
        params=params,
        num_samples=samples,
        status_columns=STATUS_COLUMNS,
        parameter_columns=PACKED_COLUMNS if request.pack else PARAMETER_COLUMNS,
        metric=space.metric,
        mode=space.mode,
        scheduler=space.make_scheduler(params["epochs"]),
        search_alg=search_alg,
        trial_dirname_creator=dirnames,
    )
    return drive(
        request,
        meta,
        data,
        started=request.location.started(),
        costs=costs,
        body=lambda session: session.fit(experiment),
    )
