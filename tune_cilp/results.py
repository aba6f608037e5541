"""Load a Ray Tune experiment (finished, running, moved or remote) into plain per-trial records.

Reading goes through Ray Tune's own result API (`ExperimentAnalysis` wrapped in a `ResultGrid`):
it only reads files, so no Ray cluster starts, and it rewrites trial and checkpoint paths to where
the experiment directory is now. `Tuner.restore(...).get_results()` would need the original
trainable, so it is not used here. The per-epoch results are read here rather than taken from
Ray's `metrics_dataframe`: Ray drops a trial's whole result.json for one damaged line (a crash or a
full disk cuts the last one short), while this reader keeps every intact line and takes the epochs
it lacks from progress.csv.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

from tune_cilp.core.errors import UserError
from tune_cilp.experiment.identity import ExperimentMeta, read_meta


@dataclass
class TrialRecord:
    """One trial as reported: its config, per-epoch results and latest checkpoint."""

    trial_id: str
    config: dict[str, Any]
    status: str  # Ray's trial status: PENDING, RUNNING, PAUSED, TERMINATED, ERROR
    history: list[dict[str, Any]]  # one dict per epoch, sorted by epoch, last report wins
    checkpoint: Any = None  # ray.tune.Checkpoint (local or remote), None before the first one
    path: str = ""
    # What was damaged or missing in the result files and what was recovered, e.g. "result.json
    # has a damaged line 3; recovered 2 intact epochs"; empty when they were read whole.
    damage: str = ""


@dataclass
class Experiment:
    """An experiment directory: its trials and the runner's metadata (empty if not written)."""

    path: str
    trials: list[TrialRecord]
    meta: ExperimentMeta | None = None  # None: not made by tune_cilp.run

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


def _read_lines(fs: Any, path: str) -> tuple[list[bytes] | None, str]:
    """(the file's lines without their line ends, a read error); lines are None if unreadable."""
    try:
        with fs.open_input_stream(path) as f:
            return f.readall().split(b"\n"), ""
    except FileNotFoundError:
        return None, ""
    except OSError as exc:
        return None, f"cannot be read ({exc})"


def _json_rows(lines: list[bytes]) -> tuple[list[dict[str, Any]], list[int]]:
    """Results in result.json (one JSON object a line) and the numbers of the lines that are not."""
    from ray.air.constants import TRAINING_ITERATION
    from ray.tune.utils import flatten_dict

    rows, damaged = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():  # after the last line end; Ray writes no blank lines
            continue
        try:
            row = json.loads(line)
        except ValueError:  # cut short, overwritten, or not UTF-8
            row = None
        if isinstance(row, dict) and TRAINING_ITERATION in row:
            rows.append(flatten_dict(row, delimiter="/"))  # as in Ray's dataframe and progress.csv
        else:
            damaged.append(number)
    return rows, damaged


def _csv_value(text: str) -> Any:
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def _csv_rows(lines: list[bytes]) -> tuple[list[dict[str, Any]], list[int]]:
    """Results in progress.csv (a header line, then one result a line) and the damaged lines.

    A row is one line (Ray's results hold no multi-line text), and a last line without its line
    end counts as damaged: a number cut short there would still parse, to a wrong value.
    """
    texts: list[str | None] = []
    for raw in lines:
        try:
            texts.append(raw.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError:
            texts.append(None)
    if texts and texts[-1]:
        texts[-1] = None
    header = next(csv.reader([texts[0]])) if texts and texts[0] else None
    rows, damaged = [], []
    if texts and texts[0] is None:
        damaged.append(1)
    for number, text in enumerate(texts[1:], 2):
        if text == "":
            continue
        fields = None if text is None or header is None else next(csv.reader([text]))
        if fields is None or len(fields) != len(header):
            damaged.append(number)
        else:
            rows.append({k: _csv_value(v) for k, v in zip(header, fields, strict=True) if v})
    return rows, damaged


def _damaged(name: str, numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:5]))
    if len(numbers) > 5:
        shown += f" and {len(numbers) - 5} more"
    return f"{name} has {'a damaged line' if len(numbers) == 1 else 'damaged lines'} {shown}"


def _read_history(fs: Any, trial: Any) -> tuple[list[dict[str, Any]], str]:
    """(per-epoch rows, `TrialRecord.damage`) of one trial, read from its directory on `fs`."""
    from ray.air.constants import EXPR_PROGRESS_FILE, EXPR_RESULT_FILE

    lines, error = _read_lines(fs, f"{trial.path}/{EXPR_RESULT_FILE}")
    json_rows, damaged = _json_rows(lines or [])
    if json_rows and not damaged and not error:
        return _history(json_rows), ""
    # result.json is damaged, empty or missing: Ray writes each result to progress.csv as well.
    csv_lines, csv_error = _read_lines(fs, f"{trial.path}/{EXPR_PROGRESS_FILE}")
    csv_rows, csv_damaged = _csv_rows(csv_lines or [])
    history = _history(csv_rows + json_rows)  # result.json's row wins for an epoch in both
    problems = []
    if error:
        problems.append(f"{EXPR_RESULT_FILE} {error}")
    elif damaged:
        problems.append(_damaged(EXPR_RESULT_FILE, damaged))
    elif lines is None and csv_lines is None and trial.has_reported_at_least_once:
        problems.append(f"{EXPR_RESULT_FILE} and {EXPR_PROGRESS_FILE} are missing")
    elif history or trial.has_reported_at_least_once:  # else: the trial has not reported yet
        problems.append(f"{EXPR_RESULT_FILE} is {'missing' if lines is None else 'empty'}")
    if csv_error:
        problems.append(f"{EXPR_PROGRESS_FILE} {csv_error}")
    elif csv_damaged:
        problems.append(_damaged(EXPR_PROGRESS_FILE, csv_damaged))
    if not problems:
        return history, ""
    recovered = f"recovered {len(history)} intact epoch{'' if len(history) == 1 else 's'}"
    from_csv = len(history) - len(_history(json_rows))
    if from_csv:
        recovered += f" ({from_csv} from {EXPR_PROGRESS_FILE})"
    return history, "; ".join([*problems, recovered])


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
    # Trials that have not reported yet or whose result files are damaged: Ray logs a warning per
    # trial and leaves its results out, while _read_history reads them and experiment_table notes
    # them.
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
        history, damage = _read_history(grid.filesystem, trial)
        trials.append(
            TrialRecord(
                trial_id=trial.trial_id,
                # A trial that failed before reporting has no result config: use the trial's.
                config=dict(result.config or trial.config or {}),
                status=str(trial.status),
                history=history,
                checkpoint=result.checkpoint,
                path=result.path,
                damage=damage,
            )
        )
    # Trial ids end in a creation counter: sorting gives the order the search space listed them.
    trials.sort(key=lambda t: t.trial_id)
    return Experiment(path=path, trials=trials, meta=read_meta(path))
