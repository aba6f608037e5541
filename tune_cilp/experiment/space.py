"""What a named experiment is (SearchSpace) and the check of every configuration it can
generate. The declarations live in the ``search_spaces`` package; tune_cilp.spaces finds them."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ray.tune.search.sample import Domain

from tune_cilp.core.errors import UserError


def _no_scheduler(epochs: int) -> Any:
    return None  # Tune's FIFO scheduler: every trial runs all its epochs


def _no_search_alg() -> Any:
    return None  # Tune's basic variant generator: grid_search / sampling from param_space


@dataclass(frozen=True)
class SearchSpace:
    """One named experiment.

    param_space:     Tune param space over the wing's config fields (values, grid_search,
                     choice...); fields it leaves out keep the config's defaults, the seed's
                     protocol.
    epochs:          default epochs per trial (``--epochs`` overrides).
    num_samples:     default Tune num_samples (``--num-samples`` overrides).
    make_scheduler:  epochs -> a Tune trial scheduler, or None for FIFO.
    make_search_alg: () -> a Tune search algorithm, or None for grid/random variants.
    """

    name: str
    description: str
    param_space: dict[str, Any]
    metric: str = "val_loss"
    mode: str = "min"
    num_samples: int = 1
    epochs: int = 50
    make_scheduler: Callable[[int], Any] = _no_scheduler
    make_search_alg: Callable[[], Any] = _no_search_alg
    grid_seeds: bool = True  # False when a search algorithm samples (it cannot take a grid)

    @property
    def samples(self) -> bool:
        """Whether a trial's configuration is drawn (a range or choice, or a search algorithm):
        only then do more Tune samples give different trials, not copies of the same one."""
        return self.make_search_alg is not _no_search_alg or has_sampling(self.param_space)


def has_sampling(params: dict[str, Any]) -> bool:
    """Whether a Tune param space draws any value (a Domain: choice, uniform, ...)."""
    return any(isinstance(v, Domain) for v in params.values())


def _candidates(value: Any) -> list[Any]:
    """The values a param-space entry can take, for checking: every grid or choice value, the
    bounds of a numeric range, or the value itself."""
    if isinstance(value, dict) and set(value) == {"grid_search"}:
        return list(value["grid_search"])
    if isinstance(value, Domain):
        if hasattr(value, "categories"):
            return list(value.categories)
        return [value.lower, value.upper]
    return [value]


def check_param_space(name: str, params: dict[str, Any], validate: Callable[[dict], Any]) -> None:
    """Check every configuration the space can generate (its grid and choice values, its
    ranges' bounds) with ``validate`` (a config's from_dict), before any trial starts;
    UserError otherwise."""
    keys = list(params)
    for values in itertools.product(*(_candidates(params[k]) for k in keys)):
        try:
            validate(dict(zip(keys, values, strict=True)))
        except UserError as exc:
            raise UserError(f"space {name!r}: {exc}") from None
