"""Per-scene validation (and held-out test) scores of one trial: what the analysis resamples
and pairs.

Every classifier trial writes PREDICTIONS_FILE beside its checkpoint's state (so a resumed trial
carries on with the same record): the stable scene id and label of every validation scene, and
the probability of "spheres" the model gave each one at the epoch kept as best and at the last
epoch; with a test split (--test-fraction), also the test scenes' ids, labels and probabilities
at that best epoch, which validation chose. Plain JSON, read without unpickling anything (an
experiment folder may come from someone else) and checked on the way in: a damaged file is one
line, never a wrong table.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from tune_cilp.core.errors import UserError

PREDICTIONS_FILE = "predictions.json"
FORMAT = 2  # bump when the layout changes; readers refuse a newer one
# Format 2 added the test block. A record without one is still written as format 1, byte for
# byte as before: a reader older than the test split refuses only what it cannot read whole.
FORMAT_WITHOUT_TEST = 1


@dataclass(frozen=True)
class Scores:
    """The validation probabilities of one epoch, aligned with Predictions.ids."""

    epoch: int
    proba: np.ndarray  # float64 (N,), in [0, 1]: sigmoid of the logits in float64, which keeps
    # confident scores apart (float32 rounds every logit above ~17 to exactly 1)


@dataclass(frozen=True)
class HeldOut:
    """The test split's scenes and their probabilities at the best epoch: scenes that neither
    training nor the choice of epoch or configuration saw (Scores' dtypes; ids apart from the
    validation ids)."""

    epoch: int  # the best epoch, chosen on validation (Predictions.best.epoch)
    ids: np.ndarray
    labels: np.ndarray
    proba: np.ndarray


@dataclass(frozen=True)
class Predictions:
    """One trial's validation scenes and its scores at the best and the last epoch, and the
    test split's at the best epoch where the trial held one out."""

    ids: np.ndarray  # str (N,): stable scene keys ("cubes/0042"), pair up across trials
    labels: np.ndarray  # int64 (N,): 0 = cubes, 1 = spheres
    best: Scores | None  # None: the best epoch's scores were never recorded (an older resume)
    last: Scores
    test: HeldOut | None = None  # None: no test split (or, like best, not recorded)

    def verdict(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, labels, probabilities) a verdict rests on: the held-out test scores where
        there is a test split, else the last epoch's validation scores (no epoch was chosen on
        them; the best epoch was)."""
        if self.test is not None:
            return self.test.ids, self.test.labels, self.test.proba
        return self.ids, self.labels, self.last.proba

    def to_json(self) -> str:
        """The record as JSON text (probabilities as float64, so they read back bit-equal)."""

        def scores(s: Scores | None) -> dict[str, Any] | None:
            if s is None:
                return None
            return {"epoch": s.epoch, "proba": _floats(s.proba)}

        data: dict[str, Any] = {
            "format": FORMAT_WITHOUT_TEST if self.test is None else FORMAT,
            "ids": _strings(self.ids),
            "labels": _ints(self.labels),
            "best": scores(self.best),
            "last": scores(self.last),
        }
        if self.test is not None:
            test = self.test
            data["test"] = {
                "epoch": test.epoch,
                "ids": _strings(test.ids),
                "labels": _ints(test.labels),
                "proba": _floats(test.proba),
            }
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, source: str = PREDICTIONS_FILE) -> Predictions:
        """Parse and check a record written by to_json; UserError naming `source` otherwise."""
        try:
            data = json.loads(text)
            version = data.get("format") if isinstance(data, dict) else "?"
            if type(version) is not int or version not in (FORMAT_WITHOUT_TEST, FORMAT):
                raise ValueError(f"format {version}")
            if ("test" in data) != (version == FORMAT):
                has = "needs a" if version == FORMAT else "has no"
                raise ValueError(f"format {version} {has} test block")
            ids, labels = _scenes(data["ids"], data["labels"])
            best = None if data["best"] is None else _scores(data["best"], len(ids))
            test = None if version != FORMAT else _held_out(data["test"], ids, best)
            return cls(ids, labels, best, _scores(data["last"], len(ids)), test)
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{source}: not a valid predictions record ({exc})") from None


def _strings(values: np.ndarray) -> list[str]:
    return [str(v) for v in values]


def _ints(values: np.ndarray) -> list[int]:
    return [int(v) for v in values]


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in values]


def _scenes(ids_data: Any, labels_data: Any) -> tuple[np.ndarray, np.ndarray]:
    ids = np.array([str(i) for i in ids_data])
    # Each label checked as read: NumPy would truncate 0.5 to 0 (and take True as 1).
    if not all(type(v) is int and v in (0, 1) for v in labels_data):
        raise ValueError("labels must be 0/1, one per scene id")
    labels = np.array(labels_data, dtype=np.int64)
    if labels.shape != ids.shape:
        raise ValueError("labels must be 0/1, one per scene id")
    if len(set(ids.tolist())) != len(ids):
        raise ValueError("scene ids repeat")
    return ids, labels


def _held_out(data: Any, val_ids: np.ndarray, best: Scores | None) -> HeldOut:
    try:
        ids, labels = _scenes(data["ids"], data["labels"])
        if not len(ids):
            raise ValueError("no scenes")
        if set(ids.tolist()) & set(val_ids.tolist()):
            raise ValueError("scene ids among the validation ids")
        scores = _scores(data, len(ids))
        # The test scores are the validation-chosen epoch's, so they exist only with the best's.
        if best is None or scores.epoch != best.epoch:
            raise ValueError(f"epoch {scores.epoch} is not the best epoch")
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"test block: {exc}") from None
    return HeldOut(scores.epoch, ids, labels, scores.proba)


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


def packed_folder(seed: int) -> str:
    """Where a packed trial's checkpoint keeps seed `seed`'s record (--pack): a sub-folder."""
    return f"seed-{seed}"


def write_packed_predictions(folder: str | os.PathLike, records: dict[int, Predictions]) -> None:
    """Each packed seed's record in its sub-folder (packed_folder) of a checkpoint's folder."""
    for seed, predictions in records.items():
        sub = os.path.join(folder, packed_folder(seed))
        os.makedirs(sub, exist_ok=True)
        write_predictions(sub, predictions)
