"""A split that holds one class only, said plainly under every table.

The seed's data is 93 % cubes, so a small or unlucky validation (or held-out test) split can hold
no sphere at all (a balanced set, no cube). Some metrics are then undefined (ROC AUC and AP rank
spheres against cubes; F1 has no recall without spheres) and some describe the one class alone
(balanced accuracy of cubes only is their recall). Which is which comes from the metric registry
(`Metric.needs`, `Metric.per_class` in tune_cilp/core/metrics.py), never from a list here. The
tables (analysis/table.py, ranking.py, cilp_table.py) print `note()` once, tag those metrics'
rows (`mark`), show an undefined one as n/a, and let no verdict rest on them (`refusal`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tune_cilp.core.metrics import SCENE_METRICS, TRIAL_METRICS, Metric
from tune_cilp.data.constants import LABELS

UNDEFINED = "undefined"  # the tag of an undefined metric's row


@dataclass(frozen=True)
class OneClass:
    """The table's scenes are all of one class.

    present: that class's label (0 cubes, 1 spheres); None where it is unknown (no per-scene
    scores: every trial reported a majority-class rate of 1). scenes: how many (None: unknown).
    split: "validation" or "held-out test"."""

    present: int | None
    scenes: int | None
    split: str = "validation"

    def _undefined(self, m: Metric) -> bool:
        if self.present is None:  # undefined whichever class it is
            return all(m.undefined_on((label,)) for label in range(len(LABELS)))
        return m.undefined_on((self.present,))

    def _one_sided(self, m: Metric) -> bool:
        """Defined here but about the one class: a per-class metric (and, the class unknown,
        one undefined on the other class)."""
        return not self._undefined(m) and (m.per_class or (self.present is None and bool(m.needs)))

    @property
    def undefined(self) -> tuple[str, ...]:
        """The registry's metrics that are undefined on these scenes (read at each use: a
        metric registered while running counts too)."""
        return tuple(k for k in SCENE_METRICS if self._undefined(TRIAL_METRICS[k]))

    @property
    def one_sided(self) -> tuple[str, ...]:
        """The registry's metrics that are defined here but describe the one class alone."""
        return tuple(k for k in SCENE_METRICS if self._one_sided(TRIAL_METRICS[k]))

    @property
    def only(self) -> str:
        """ "cubes only" (the tag of a one-sided metric's row)."""
        return f"{self.name} only"

    @property
    def name(self) -> str:
        return LABELS[self.present] if self.present is not None else "one class"

    def mark(self, key: str) -> str:
        """The tag a row of registry metric `key` carries: UNDEFINED, "cubes only" or ""."""
        if key in self.undefined:
            return UNDEFINED
        return self.only if key in self.one_sided else ""

    def counts(self) -> str:
        """ "12 cubes and 0 spheres"; "" where they are unknown."""
        if self.present is None or self.scenes is None:
            return ""
        return " and ".join(
            f"{self.scenes if label == self.present else 0} {name}"
            for label, name in enumerate(LABELS)
        )

    def _counted(self) -> str:
        """ " (12 cubes and 0 spheres)", or "" where the counts are unknown."""
        return f" ({self.counts()})" if self.counts() else ""

    def note(self) -> str:
        """The one line under the table: the class counts and what they leave of the metrics."""
        if self.present is None:
            head = (
                f"The {self.split} split holds one class only (every trial reports a "
                "majority-class rate of 1.00; which class is unknown without per-scene scores)"
            )
            need, alone = "", "where defined, on that class alone"
        else:
            missing = [n for label, n in enumerate(LABELS) if label != self.present]
            head = f"The {self.split} split holds {self.counts()}"
            need = f" (they need {_words(missing)}; shown as n/a)"
            alone = f"on {self.name} alone (a figure of {self.name} only, such as their recall)"
        parts = []
        if self.undefined:
            parts.append(f"{_labels(self.undefined)} {_are(self.undefined)} undefined there{need}")
        if self.one_sided:
            are = _are(self.one_sided)
            parts.append(f"{_labels(self.one_sided)} {are} computed {alone}, marked ({self.only})")
        if not parts:
            return f"{head}."
        return f"{head}: {', and '.join(parts)}; no verdict rests on them."

    def refusal(self, metric: str) -> str:
        """The verdict line when `metric`, the space's primary, is undefined or one-sided here;
        "" when a verdict may rest on it."""
        if metric in self.undefined:
            why = "it is undefined"
        elif metric in self.one_sided:
            why = f"it describes {self.name} alone"
        else:
            return ""
        # Refused rather than decided on another metric: the space declared its metric before
        # the run (Tune scheduled on it), so choosing a stand-in after seeing the split is the
        # choice that declaration exists to prevent, and on one class every stand-in says how
        # the models score that class, not whether they tell the classes apart.
        return (
            f"no verdict on {metric}: {why} on this {self.split} split{self._counted()}; the "
            "space declared it before the run, so no other metric stands in for it"
        )

    def to_dict(self) -> dict[str, Any]:
        """For --json: the class (None: unknown), its scenes, the split and the metrics."""
        return {
            "class": LABELS[self.present] if self.present is not None else None,
            "scenes": self.scenes,
            "split": self.split,
            "undefined": list(self.undefined),
            "one_sided": list(self.one_sided),
        }

    def caution(self, metric: str) -> str:
        """What a verdict on a metric that is defined here must add."""
        return (
            f"; caution: the {self.split} split holds {self.name} only{self._counted()}, so "
            f"this {metric} says how each variant scores {self.name}, not whether it tells "
            f"{_words(list(LABELS))} apart"
        )


def one_class_of(labels: np.ndarray, split: str = "validation") -> OneClass | None:
    """A OneClass when every one of `labels` (0/1 per scene) is the same, else None."""
    present = np.unique(np.asarray(labels))
    if len(present) != 1:
        return None
    return OneClass(int(present[0]), len(labels), split)


def one_class_from_rates(rates: Iterable[float]) -> OneClass | None:
    """Without per-scene scores: a OneClass of unknown class when every trial reported a
    majority-class rate of 1 (older trials report none: NaN, and then nothing is claimed)."""
    rates = list(rates)
    if not rates or not all(math.isfinite(r) and r == 1.0 for r in rates):
        return None
    return OneClass(None, None)


def tagged(label: str, tags: Sequence[str]) -> str:
    """A row or column label with its tags on a second line: "ROC AUC\\n(primary, undefined)"."""
    shown = [t for t in tags if t]
    return f"{label}\n({', '.join(shown)})" if shown else label


def _labels(keys: Sequence[str]) -> str:
    return _words([TRIAL_METRICS[k].label for k in keys])


def _words(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _are(keys: Sequence[str]) -> str:
    return "is" if len(keys) == 1 else "are"
