"""What every trial config shares, with no torch import (the driver checks every configuration
of a space before Ray starts): the allowed precisions and class balances, the epoch bound, the
checks of the protocol fields every trainer has, and turning a Tune trial config (a plain dict)
back into a config class."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from typing import Any, TypeVar

import numpy as np

from tune_cilp.core.errors import UserError

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
# How training answers the class imbalance (docs/STATISTICS.md, "Class imbalance remedies"):
# "none" (the seed's), "pos_weight" (BCE with the positive class weighted by the training
# split's cubes / spheres ratio) or "sampler" (class-balanced batches, drawn with replacement).
CLASS_BALANCES: tuple[str, ...] = ("none", "pos_weight", "sampler")
MAX_EPOCHS = 10_000  # far past any schedule here; a typo of extra zeros would run for ever

T = TypeVar("T")


def is_int(value: object) -> bool:
    """An int, not a bool (JSON and YAML make True an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """A real number, not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_protocol(cfg: Any, bad: Callable[[str, str], UserError]) -> None:
    """The checks of the fields every trial config has (epochs, batch_size, seed, lr, eta_min,
    weight_decay, precision, channels_last); `bad(name, rule)` makes the error."""
    for name in ("epochs", "batch_size"):
        if not is_int(getattr(cfg, name)) or getattr(cfg, name) < 1:
            raise bad(name, "an integer >= 1")
    if cfg.epochs > MAX_EPOCHS:
        raise bad("epochs", f"at most {MAX_EPOCHS:,}")
    if not is_int(cfg.seed) or not 0 <= cfg.seed < 2**63:
        raise bad("seed", "an integer in [0, 2**63)")
    if not is_real(cfg.lr) or not 0 < cfg.lr < math.inf:
        raise bad("lr", "a finite number > 0")
    for name in ("eta_min", "weight_decay"):
        if not is_real(getattr(cfg, name)) or not 0 <= getattr(cfg, name) < math.inf:
            raise bad(name, "a finite number >= 0")
    if cfg.precision not in PRECISIONS:
        raise bad("precision", f"one of {', '.join(PRECISIONS)}")
    if cfg.channels_last not in (None, True, False):
        raise bad("channels_last", "null, true or false")


def check_class_balance(cfg: Any, bad: Callable[[str, str], UserError]) -> None:
    if cfg.class_balance not in CLASS_BALANCES:
        raise bad("class_balance", f"one of {', '.join(CLASS_BALANCES)}")


def config_from_dict(
    cls: type[T], mapping: Mapping[str, Any], floats: Iterable[str], what: str, skip: str = ""
) -> T:
    """cls built from a plain mapping (a Ray Tune trial config): unknown keys refused in one
    line naming `what` ("training", "contrastive", ...), NumPy scalars made Python values and
    the `floats` fields given as ints made floats; `skip`: a key the mapping may carry that is
    not a field (a stage's name)."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(mapping) - known - {skip})
    if unknown:
        raise UserError(
            f"unknown {what} option(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(sorted(known))}"
        )
    values = {k: v.item() if isinstance(v, np.generic) else v for k, v in mapping.items()}
    values.pop(skip, None)
    for name in floats:
        if is_int(values.get(name)):
            values[name] = float(values[name])
    return cls(**values)
