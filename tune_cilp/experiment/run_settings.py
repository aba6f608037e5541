"""The run's settings that every space applies the same way, each defined once: the smoke
test's epochs and samples, --epochs over the space's default, and --precision and --seeds over a
param space (a grid over seeds)."""

from __future__ import annotations

from typing import Any

from ray import tune

from tune_cilp.experiment.request import RunRequest

SMOKE_EPOCHS = 1  # a smoke test trains each trial this many epochs (unless --epochs)
SMOKE_MAX_SAMPLES = 2  # a smoke test runs at most this many samples of a sampled space
# --pack K: a trial's config names the seeds it trains together under this key (its "seed" is
# then none of them: each packed seed reports under "packed"/<seed>, results.py splits them)
PACKED_SEEDS = "packed_seeds"
PACKED = "packed"


def run_epochs(request: RunRequest, default: int | None) -> int | None:
    """Epochs per trial: --epochs, else SMOKE_EPOCHS in a smoke test, else `default` (the
    space's; None: each config's own)."""
    return request.epochs or (SMOKE_EPOCHS if request.smoke_test else default)


def num_samples(request: RunRequest, space_samples: int) -> int:
    """Tune's num_samples: --num-samples, else the space's (at most 2 in a smoke test)."""
    if request.num_samples:
        return request.num_samples
    return min(space_samples, SMOKE_MAX_SAMPLES) if request.smoke_test else space_samples


def seed_grid(seeds: list[int]) -> Any:
    """One trial per seed: a grid over several, the value itself for one."""
    return tune.grid_search(seeds) if len(seeds) > 1 else seeds[0]


def packs(seeds: list[int], k: int) -> list[list[int]]:
    """The seeds in packs of k, in order (the last may be smaller)."""
    return [seeds[i : i + k] for i in range(0, len(seeds), k)]


def with_run_settings(
    params: dict[str, Any],
    *,
    epochs: int | None = None,
    precision: str | None = None,
    seeds: list[int] | None = None,
    pack: int | None = None,
) -> dict[str, Any]:
    """`params` with the run's epochs, precision and seeds (a grid; with `pack`, a grid over
    packs of that many seeds) where given (None = the space's own)."""
    params = dict(params)
    if epochs is not None:
        params["epochs"] = epochs
    if precision is not None:
        params["precision"] = precision
    if seeds is not None and pack is not None:
        params.pop("seed", None)
        params[PACKED_SEEDS] = tune.grid_search(packs(seeds, pack))
    elif seeds is not None:
        params["seed"] = seed_grid(seeds)
    return params


def unpacked(config: dict[str, Any]) -> dict[str, Any]:
    """A trial config without its packed seeds (what the trainer's config class reads)."""
    return {k: v for k, v in config.items() if k != PACKED_SEEDS}
