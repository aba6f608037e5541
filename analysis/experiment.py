"""Load a Ray Tune experiment (finished, running, moved or remote) into plain per-trial records.

Reading goes through Ray Tune's own result API (`ExperimentAnalysis` wrapped in a `ResultGrid`):
it only reads files, so no Ray cluster starts, and it rewrites trial and checkpoint paths to where
the experiment directory is now. `Tuner.restore(...).get_results()` would need the original
trainable, so it is not used here.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

from analysis.stats import TrialResult, summarize_trial
from tune_cilp.errors import UserError

META_FILE = "tune_cilp.json"  # written by tune_cilp.run: space, dataset, data_dir, smoke_test, argv


@dataclass
class TrialRecord:
    """One trial as reported: its config, per-epoch results and latest checkpoint."""

    trial_id: str
    config: dict[str, Any]
    status: str  # Ray's trial status: PENDING, RUNNING, PAUSED, TERMINATED, ERROR
    history: list[dict[str, Any]]  # one dict per epoch, sorted by epoch, last report wins
    checkpoint: Any = None  # ray.tune.Checkpoint (local or remote), None before the first one
    path: str = ""


@dataclass
class Experiment:
    """An experiment directory: its trials and the runner's metadata (empty if not written)."""

    path: str
    trials: list[TrialRecord]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return os.path.basename(self.path.rstrip("/"))


def _is_uri(path: str) -> bool:
    return "://" in path


def _history(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-epoch rows, deduplicated: a trial restored from an older checkpoint re-reports epochs."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for i, row in enumerate(records):
        epoch = row.get("epoch")
        if epoch is None or (isinstance(epoch, float) and math.isnan(epoch)):
            epoch = row.get("training_iteration", i + 1)
        by_epoch[int(epoch)] = {k: v for k, v in row.items() if not k.startswith("config/")}
    return [by_epoch[e] for e in sorted(by_epoch)]


def _read_meta(fs: Any, experiment_path: str) -> dict[str, Any]:
    meta_path = f"{experiment_path.rstrip('/')}/{META_FILE}"
    try:
        with fs.open_input_stream(meta_path) as f:
            return json.loads(f.readall().decode("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UserError(f"{meta_path}: cannot read experiment metadata ({exc})") from exc


def load_experiment(path_or_uri: str | os.PathLike[str]) -> Experiment:
    """Load every trial of the experiment at a local path or storage URI (s3://, gs://, file://).

    Works on a running experiment (the trials reported so far) and on a directory that was moved
    or copied. Raises UserError when the path is not a Ray Tune experiment.
    """
    from ray.tune import ExperimentAnalysis, ResultGrid

    path = str(path_or_uri)
    if not _is_uri(path):
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.isdir(path):
            raise UserError(f"experiment path {path}: no such directory")
    # Trials of a running experiment that have not reported yet have no result files; Ray logs a
    # warning per trial, while experiment_table notes them in one line.
    ray_logger = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = ray_logger.level
    ray_logger.setLevel(logging.ERROR)
    try:
        analysis = ExperimentAnalysis(path)
    except ValueError as exc:
        raise UserError(
            f"experiment path {path}: not a Ray Tune experiment (no experiment_state-*.json)"
        ) from exc
    except Exception as exc:  # corrupt state files, unreachable storage: one line for the user
        raise UserError(f"experiment path {path}: cannot read experiment state ({exc})") from exc
    finally:
        ray_logger.setLevel(level)

    grid = ResultGrid(analysis)  # same order as analysis.trials
    trials = []
    for trial, result in zip(analysis.trials, grid, strict=True):
        df = result.metrics_dataframe
        records = [] if df is None or df.empty else df.to_dict("records")
        trials.append(
            TrialRecord(
                trial_id=trial.trial_id,
                # A trial that failed before reporting has no result config: use the trial's.
                config=dict(result.config or trial.config or {}),
                status=str(trial.status),
                history=_history(records),
                checkpoint=result.checkpoint,
                path=result.path,
            )
        )
    # Trial ids end in a creation counter: sorting gives the order the search space listed them.
    trials.sort(key=lambda t: t.trial_id)
    return Experiment(
        path=path, trials=trials, meta=_read_meta(grid.filesystem, analysis.experiment_path)
    )


def trial_results(experiment: Experiment) -> list[TrialResult]:
    """Each trial reduced to its best epoch; trials without a validation loss yet are left out."""
    out = []
    for t in experiment.trials:
        result = summarize_trial(t.trial_id, t.config, t.history, t.status, t.checkpoint)
        if result is not None:
            out.append(result)
    return out
