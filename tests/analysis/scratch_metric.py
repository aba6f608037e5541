"""A scratch metric, as a developer would add one (tests/analysis/test_scratch_metric.py): the
negative predictive value, of the scenes called cubes the share that are cubes. A developer adds
its function and ONE entry at the end of tune_cilp.core.metrics.CLASSIFICATION:

    Metric("val_npv", "NPV", ".3f", "max", bounds=UNIT, scene=npv, ranking_column=6)

and nothing else anywhere. register() makes that edit in the process that calls it.
"""

from __future__ import annotations

import numpy as np

from tune_cilp.core import metrics
from tune_cilp.core.metrics import UNIT, Metric
from tune_cilp.core.scoring import ScoredScenes


def npv(s: ScoredScenes) -> np.ndarray:
    """TN / (TN + FN) under each weighting; NaN where no scene is called a cube."""
    return s.tn / (s.tn + s.fn)


NPV = Metric("val_npv", "NPV", ".3f", "max", bounds=UNIT, scene=npv, ranking_column=6)
_BEFORE = metrics.CLASSIFICATION


def register() -> None:
    metrics.CLASSIFICATION = (*_BEFORE, NPV)


def unregister() -> None:
    metrics.CLASSIFICATION = _BEFORE
