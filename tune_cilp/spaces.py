"""The registry of named experiments: every module of the ``search_spaces`` package that
defines ``SPACE``. Adding a module there is all it takes; nothing else needs editing."""

from __future__ import annotations

import importlib
import pkgutil

import search_spaces
from tune_cilp.core.errors import UserError
from tune_cilp.experiment.space import SearchSpace

DEFAULT_SPACE = "seed-ablation"


def _discover() -> dict[str, SearchSpace]:
    spaces: dict[str, SearchSpace] = {}
    for info in sorted(pkgutil.iter_modules(search_spaces.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{search_spaces.__name__}.{info.name}")
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
