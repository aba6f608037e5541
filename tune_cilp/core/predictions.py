"""Per-scene validation scores of one trial: what the analysis resamples and pairs.

Every classifier trial writes PREDICTIONS_FILE beside its checkpoint's state (so a resumed trial
carries on with the same record): the stable scene id and label of every validation scene, and
the probability of "spheres" the model gave each one at the epoch kept as best and at the last
epoch. Plain JSON, read without unpickling anything (an experiment folder may come from someone
else) and checked on the way in: a damaged file is one line, never a wrong table.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from tune_cilp.core.errors import UserError

PREDICTIONS_FILE = "predictions.json"
FORMAT = 1  # bump when the layout changes; readers refuse a newer one


@dataclass(frozen=True)
class Scores:
    """The validation probabilities of one epoch, aligned with Predictions.ids."""

    epoch: int
    proba: np.ndarray  # float64 (N,), in [0, 1]: sigmoid of the logits in float64, which keeps
    # confident scores apart (float32 rounds every logit above ~17 to exactly 1)


@dataclass(frozen=True)
class Predictions:
    """One trial's validation scenes and its scores at the best and the last epoch."""

    ids: np.ndarray  # str (N,): stable scene keys ("cubes/0042"), pair up across trials
    labels: np.ndarray  # int64 (N,): 0 = cubes, 1 = spheres
    best: Scores | None  # None: the best epoch's scores were never recorded (an older resume)
    last: Scores

    def to_json(self) -> str:
        """The record as JSON text (probabilities as float64, so they read back bit-equal)."""

        def scores(s: Scores | None) -> dict[str, Any] | None:
            if s is None:
                return None
            return {"epoch": s.epoch, "proba": [float(p) for p in s.proba]}

        return json.dumps(
            {
                "format": FORMAT,
                "ids": [str(i) for i in self.ids],
                "labels": [int(v) for v in self.labels],
                "best": scores(self.best),
                "last": scores(self.last),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes, source: str = PREDICTIONS_FILE) -> Predictions:
        """Parse and check a record written by to_json; UserError naming `source` otherwise."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format') if isinstance(data, dict) else '?'}")
            ids = np.array([str(i) for i in data["ids"]])
            # Each label checked as read: NumPy would truncate 0.5 to 0 (and take True as 1).
            if not all(type(v) is int and v in (0, 1) for v in data["labels"]):
                raise ValueError("labels must be 0/1, one per scene id")
            labels = np.array(data["labels"], dtype=np.int64)
            if labels.shape != ids.shape:
                raise ValueError("labels must be 0/1, one per scene id")
            if len(set(ids.tolist())) != len(ids):
                raise ValueError("scene ids repeat")
            best = None if data["best"] is None else _scores(data["best"], len(ids))
            return cls(ids, labels, best, _scores(data["last"], len(ids)))
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{source}: not a valid predictions record ({exc})") from None


def _scores(data: Any, n: int) -> Scores:
    proba = np.array(data["proba"], dtype=np.float64)
    if proba.shape != (n,) or not np.all((proba >= 0) & (proba <= 1)):
        raise ValueError(f"expected {n} probabilities in [0, 1]")
    epoch = data["epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        raise ValueError(f"epoch {epoch!r}")
    return Scores(epoch, proba)


def write_predictions(folder: str | os.PathLike, predictions: Predictions) -> str:
    """Write `predictions` as folder/PREDICTIONS_FILE (a checkpoint's staging folder, which Tune
    copies into the experiment whole); returns the path."""
    path = os.path.join(folder, PREDICTIONS_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write(predictions.to_json())
    return path
