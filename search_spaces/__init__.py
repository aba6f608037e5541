"""Named Ray Tune experiments: one small module per space, each exposing ``SPACE``.

Adding an experiment = adding a module here with a ``SPACE = SearchSpace(...)``; the registry
finds it by scanning the package, so nothing else needs editing.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tune_cilp.errors import UserError

DEFAULT_SPACE = "seed-ablation"
# The seed notebook's protocol (experiments.md section 2), shared by the spaces that keep it.
SEED_PROTOCOL: dict[str, Any] = {"lr": 1e-3, "eta_min": 1e-6, "batch_size": 32, "seed": 51}


def _no_scheduler(epochs: int) -> Any:
    return None  # Tune's FIFO scheduler: every trial runs all its epochs


def _no_search_alg() -> Any:
    return None  # Tune's basic variant generator: grid_search / sampling from param_space


@dataclass(frozen=True)
class SearchSpace:
    """One named experiment.

    param_space:     Tune param space over TrainConfig fields (values, grid_search, choice...).
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


def _discover() -> dict[str, SearchSpace]:
    spaces: dict[str, SearchSpace] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        space = getattr(module, "SPACE", None)
        if isinstance(space, SearchSpace):
            spaces[space.name] = space
    return spaces


def list_spaces() -> list[SearchSpace]:
    """Every registered space, sorted by name."""
    return [space for _, space in sorted(_discover().items())]


def get_space(name: str) -> SearchSpace:
    """The space called ``name``; UserError listing the known names otherwise."""
    spaces = _discover()
    if name not in spaces:
        raise UserError(f"--space: unknown space {name!r} (known: {', '.join(sorted(spaces))})")
    return spaces[name]
