"""Seeded subset and train/validation split, the same way FiftyOne's random_split cuts, and
the optional held-out test split (a share of the validation scenes, held_out_mask).

random_split normalises the fractions, shuffles with RandomState(seed) and cuts at
round(n * cumulative_fraction); with DEFAULT_SPLIT and DEFAULT_SEED that is 895 / 179 of 1,074,
the seed notebook's sizes (docs/DATA.md, Split).
"""

from __future__ import annotations

import numbers

import numpy as np

from tune_cilp.core.errors import UserError
from tune_cilp.data.constants import DEFAULT_SEED, LABELS

SPLITS = ("train", "validation")
DEFAULT_SPLIT = {"train": 0.75, "validation": 0.15}


def parse_split(text: str) -> dict[str, float]:
    """Parse "train=0.75,validation=0.15" into a checked fractions dict."""
    fractions: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        try:
            fractions[key.strip()] = float(value) if sep else float("nan")
        except ValueError:
            raise UserError(f"--split: {part!r} is not NAME=FRACTION") from None
    return check_split(fractions)


def check_split(fractions: dict[str, float]) -> dict[str, float]:
    """Return the fractions in (train, validation) order; UserError if they are not usable."""
    if set(fractions) != set(SPLITS):
        raise UserError(
            f"split fractions: need exactly train and validation, got {sorted(fractions)}"
        )
    out = {name: float(fractions[name]) for name in SPLITS}
    if not all(np.isfinite(v) and v >= 0 for v in out.values()) or sum(out.values()) <= 0:
        raise UserError(
            f"split fractions: need non-negative numbers with a positive sum, got {out}"
        )
    return out


def split_mask(
    n: int, fractions: dict[str, float] | None = None, seed: int = DEFAULT_SEED
) -> np.ndarray:
    """Boolean is_train for n scenes; fractions are normalised like FiftyOne's random_split."""
    fr = check_split(fractions or DEFAULT_SPLIT)
    cumulative = np.cumsum([fr["train"], fr["validation"]])
    n_train = int(np.round(n / cumulative[-1] * cumulative[0]))
    order = np.random.RandomState(seed).permutation(n)
    is_train = np.zeros(n, dtype=bool)
    is_train[order[:n_train]] = True
    return is_train


def check_subset(fraction: float) -> float:
    """UserError unless 0 < fraction <= 1."""
    if not 0 < fraction <= 1:
        raise UserError(f"subset fraction: must be in (0, 1], got {fraction}")
    return fraction


def subset_index(n: int, fraction: float, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Sorted indices of a seeded random round(fraction * n) of n scenes."""
    check_subset(fraction)
    k = int(np.round(fraction * n))
    if k == 0:
        raise UserError(f"subset fraction: {fraction} of {n} scenes selects none")
    return np.sort(np.random.RandomState(seed).permutation(n)[:k])


def check_not_empty(is_train: np.ndarray, source: str) -> None:
    """UserError if the train or the validation split has no scenes."""
    for name, count in (("train", int(is_train.sum())), ("validation", int((~is_train).sum()))):
        if count == 0:
            raise UserError(f"{source}: split {name!r} is empty ({len(is_train)} scenes in all)")


def check_test_fraction(fraction: object, name: str = "test fraction") -> float:
    """`fraction` if it is a number strictly between 0 and 1 (the one rule of a test fraction,
    however it is given); UserError naming `name` otherwise."""
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction < 1:
        raise UserError(f"{name}: expected a number strictly between 0 and 1, got {fraction!r}")
    return float(fraction)


def held_out_mask(
    labels: np.ndarray,
    is_train: np.ndarray,
    fraction: float,
    seed: int = DEFAULT_SEED,
    name: str = "test fraction",
) -> np.ndarray:
    """Boolean mask of the validation scenes held out as a test split: of each class,
    round(fraction * its validation scenes), at most all but one, drawn with RandomState(seed)
    (the data's seed, not a trial's, so every trial of an experiment holds out the same scenes).
    UserError naming `name` if the test split would lack a class that validation has."""
    fraction = check_test_fraction(fraction, name)
    test = np.zeros(len(labels), dtype=bool)
    rng = np.random.RandomState(seed)
    for label in np.unique(labels[~is_train]):
        scenes = np.flatnonzero(~is_train & (labels == label))
        # Each class keeps a validation scene: validation chooses the epoch and the configuration.
        k = min(int(np.round(fraction * len(scenes))), len(scenes) - 1)
        if k == 0:
            raise UserError(
                f"{name} {fraction:g}: the test split would have no {LABELS[label]} "
                f"scene ({len(scenes)} in validation); choose a larger fraction or more data"
            )
        test[rng.permutation(scenes)[:k]] = True
    if not test.any():
        raise UserError(f"{name} {fraction:g}: there are no validation scenes to hold out")
    return test
