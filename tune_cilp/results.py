"""Load a Ray Tune experiment (finished, running, moved or remote) into plain per-trial records.

Reading never unpickles anything: an experiment folder may come from someone else (a
colleague's archive, a shared bucket), and Tune's own readers (`ExperimentAnalysis`,
`ResultGrid`, `Trial.from_json_state`) cloudpickle-load parts of `experiment_state-*.json`,
i.e. run whatever code the file carries. So the newest state file is parsed as plain JSON and
only its plain fields are used (trial id, status, config, folder name, whether a trial reported);
the per-epoch results come from each trial's result.json / progress.csv and the checkpoint is the
one of the last result (docs/CLUSTER.md, "What is trusted"). No Ray cluster starts.
The per-epoch results are read here rather than through pandas: one damaged line (a crash or a
full disk cuts the last one short) would drop a trial's whole result.json, while this reader
keeps every intact line and takes the epochs it lacks from progress.csv.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatch
from typing import Any

import numpy as np

from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import SELECT
from tune_cilp.core.path_guard import open_stored
from tune_cilp.core.predictions import packed_folder
from tune_cilp.experiment.identity import ExperimentMeta, read_meta
from tune_cilp.experiment.run_settings import PACKED, PACKED_SEEDS
from tune_cilp.experiment.trial_rows import CHECKPOINT_DIR_NAME


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
        with open_stored(fs, path) as f:
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


def _read_history(fs: Any, trial_path: str, reported: bool) -> tuple[list[dict[str, Any]], str]:
    """(per-epoch rows, `TrialRecord.damage`) of the trial in `trial_path` on `fs`; `reported`:
    the experiment state says the trial reported at least once."""
    from ray.air.constants import EXPR_PROGRESS_FILE, EXPR_RESULT_FILE

    lines, error = _read_lines(fs, f"{trial_path}/{EXPR_RESULT_FILE}")
    json_rows, damaged = _json_rows(lines or [])
    if json_rows and not damaged and not error:
        return _history(json_rows), ""
    # result.json is damaged, empty or missing: Ray writes each result to progress.csv as well.
    csv_lines, csv_error = _read_lines(fs, f"{trial_path}/{EXPR_PROGRESS_FILE}")
    csv_rows, csv_damaged = _csv_rows(csv_lines or [])
    history = _history(csv_rows + json_rows)  # result.json's row wins for an epoch in both
    problems = []
    if error:
        problems.append(f"{EXPR_RESULT_FILE} {error}")
    elif damaged:
        problems.append(_damaged(EXPR_RESULT_FILE, damaged))
    elif lines is None and csv_lines is None and reported:
        problems.append(f"{EXPR_RESULT_FILE} and {EXPR_PROGRESS_FILE} are missing")
    elif history or reported:  # else: the trial has not reported yet
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


STATE_PATTERN = "experiment_state-*.json"  # Tune's TuneController.CKPT_FILE_TMPL
STATUSES = ("PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR")
PICKLED = "CLOUDPICKLE_FALLBACK"  # Tune's marker of a cloudpickled value in its JSON
_CHECKPOINT_DIR = re.compile(r"checkpoint_\d+")


def _filesystem(path: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path on it) of a local directory or a storage URI."""
    import pyarrow.fs

    if not _is_uri(path):
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.isdir(path):
            raise UserError(f"experiment path {path}: no such directory")
        return pyarrow.fs.LocalFileSystem(), path
    try:
        return pyarrow.fs.FileSystem.from_uri(path)
    except Exception as exc:  # unknown scheme, no credentials, unreachable: one line
        raise UserError(f"experiment path {path}: cannot open ({exc})") from exc


def _listing(fs: Any, path: str) -> list[Any]:
    import pyarrow.fs

    return fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))


def _holds_pickle(value: Any) -> bool:
    if isinstance(value, dict):
        return value.get("_type") == PICKLED or any(map(_holds_pickle, value.values()))
    if isinstance(value, list):
        return any(map(_holds_pickle, value))
    return False


def _state_trials(text: bytes, source: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(trial state, run metadata) pairs of a state file, each parsed as plain JSON (its
    cloudpickled fields stay hex strings and are not used); UserError if not Tune's layout."""
    try:
        pairs = json.loads(text)["trial_data"]
        trials = [(json.loads(t), json.loads(m)) for t, m in pairs]
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{source}: cannot read experiment state ({exc})") from exc
    for trial, meta in trials:
        if not (isinstance(trial, dict) and isinstance(meta, dict)):
            raise UserError(f"{source}: cannot read experiment state (a trial is not an object)")
    return trials


def _trial_fields(trial: dict[str, Any], source: str) -> tuple[str, str, dict[str, Any], str]:
    """(trial id, status, config, folder name) of one trial's state, each checked."""
    trial_id, status = trial.get("trial_id"), trial.get("status")
    config, folder = trial.get("config"), trial.get("relative_logdir")
    if not isinstance(trial_id, str) or not re.fullmatch(r"[\w-]+", trial_id):
        raise UserError(f"{source}: a trial has no valid trial_id ({trial_id!r})")
    if status not in STATUSES:
        raise UserError(f"{source}: trial {trial_id} has an unknown status {status!r}")
    if not isinstance(config, dict) or _holds_pickle(config):
        # tune_cilp's configs are plain values; a pickled one is not read (it would run code).
        raise UserError(f"{source}: trial {trial_id}'s config is not plain JSON; not read")
    if not isinstance(folder, str) or not folder or folder in (".", "..") or "/" in folder:
        raise UserError(f"{source}: trial {trial_id} names no folder inside the experiment")
    return trial_id, status, config, folder


def _latest_checkpoint(fs: Any, trial_path: str, history: list[dict[str, Any]]) -> Any:
    """The checkpoint of the trial's last result that has one: the folder its row names
    (checkpoint_dir_name; with --checkpoint-every not every row has one), or, for rows that name
    none (an older Ray), as Tune's own reader gives it: the newest checkpoint_<i> folder with
    i < the last result's training_iteration (every report then saved one, numbered from 0). A
    folder a stop cut off before its result was written is named by no row, or newer, and
    passed over. None without results."""
    from ray.air.constants import TRAINING_ITERATION
    from ray.tune import Checkpoint

    last = history[-1].get(TRAINING_ITERATION) if history else None
    if not isinstance(last, int):
        return None
    folders = {
        info.base_name
        for info in _listing(fs, trial_path)
        if info.is_file is False and _CHECKPOINT_DIR.fullmatch(info.base_name)
    }
    named = [row.get(CHECKPOINT_DIR_NAME) for row in history]
    if any(isinstance(name, str) for name in named):  # the rows name their checkpoints
        # (--checkpoint-every: not every row has one)
        for name in reversed(named):
            if isinstance(name, str) and name in folders:
                return Checkpoint(f"{trial_path}/{name}", filesystem=fs)
        return None
    older = [n for n in (int(f.rpartition("_")[2]) for f in folders) if n < last]
    if not older:
        return None
    return Checkpoint(f"{trial_path}/checkpoint_{max(older):06d}", filesystem=fs)


def load_experiment(path_or_uri: str | os.PathLike[str]) -> Experiment:
    """Load every trial of the experiment at a local path or storage URI (s3://, gs://, file://).

    Works on a running experiment (the trials reported so far) and on a directory that was moved
    or copied, and never unpickles or imports anything from it. Raises UserError when the path
    is not a Ray Tune experiment or its state is not what Tune writes.
    """
    path = str(path_or_uri)
    fs, root = _filesystem(path)
    if not _is_uri(path):
        path = root
    try:
        states = sorted(
            i.path for i in _listing(fs, root) if i.is_file and fnmatch(i.base_name, STATE_PATTERN)
        )
        if not states:
            raise UserError(
                f"experiment path {path}: not a Ray Tune experiment (no {STATE_PATTERN})"
            )
        with open_stored(fs, states[-1]) as f:  # names end in a timestamp: last = newest
            text = f.readall()
    except OSError as exc:
        raise UserError(f"experiment path {path}: cannot read experiment state ({exc})") from exc
    trials = []
    for state, meta in _state_trials(text, states[-1]):
        trial_id, status, config, folder = _trial_fields(state, states[-1])
        trial_path = f"{root.rstrip('/')}/{folder}"
        reported = isinstance(meta.get("last_result"), dict) and bool(meta["last_result"])
        history, damage = _read_history(fs, trial_path, reported)
        trials.append(
            TrialRecord(
                trial_id=trial_id,
                config=config,
                status=status,
                history=history,
                checkpoint=_latest_checkpoint(fs, trial_path, history),
                path=trial_path,
                damage=damage,
            )
        )
    # Trial ids end in a creation counter: sorting gives the order the search space listed them.
    trials = [one for trial in trials for one in _unpacked(trial)]
    trials.sort(key=lambda t: t.trial_id)
    return Experiment(path=path, trials=trials, meta=read_meta(path))


def _unpacked(trial: TrialRecord) -> list[TrialRecord]:
    """A trial of packed seeds (--pack) as one record per seed, as if each seed had been its
    own trial: its config with its seed, its rows (its metrics under PACKED/<seed>, the report's
    other fields shared), its checkpoint's record of it (the seed's sub-folder); any other
    trial as it is."""
    seeds = trial.config.get(PACKED_SEEDS)
    if not isinstance(seeds, list):
        return [trial]
    config = {k: v for k, v in trial.config.items() if k != PACKED_SEEDS}
    out = []
    for seed in seeds:
        rows = [row for row in (_seed_row(r, seed) for r in trial.history) if row is not None]
        checkpoint = trial.checkpoint
        if checkpoint is not None:
            checkpoint = type(checkpoint)(
                f"{checkpoint.path}/{packed_folder(seed)}", filesystem=checkpoint.filesystem
            )
        out.append(replace(
            trial, trial_id=f"{trial.trial_id}-seed{seed}", config={**config, "seed": seed},
            history=rows, checkpoint=checkpoint,
        ))  # fmt: skip
    return out


def _seed_row(row: Mapping[str, Any], seed: int) -> dict[str, Any] | None:
    """Seed `seed`'s row of a packed report (result.json nests it; progress.csv flattens it
    to PACKED/<seed>/<key>); None if the report lacks it."""
    prefix = f"{PACKED}/{seed}/"
    nested = row.get(PACKED)
    if isinstance(nested, Mapping):
        own = nested.get(str(seed))
    else:
        own = {k[len(prefix) :]: v for k, v in row.items() if k.startswith(prefix)} or None
    if not isinstance(own, Mapping):
        return None
    shared = {k: v for k, v in row.items() if k != PACKED and not k.startswith(f"{PACKED}/")}
    return {**shared, **own}


def best_epoch(history: Sequence[Mapping[str, Any]], metric: str = SELECT) -> dict | None:
    """The epoch row with the smallest `metric` (the first on ties); None if none reported it."""
    best = None
    for row in history:
        value = row.get(metric)
        if value is None or not np.isfinite(value):
            continue
        if best is None or value < best[metric]:
            best = row
    return None if best is None else dict(best)


def kept_row(history: Sequence[Mapping[str, Any]]) -> dict | None:
    """The epoch row whose weights the trial kept: the one its last row's best_epoch names (a
    trainer may keep only some epochs, e.g. CILP's nvidia classifier only its fine-tune phase),
    else, for results without it, best_epoch()."""
    kept = history[-1].get("best_epoch") if history else None
    for row in history:
        if kept and row.get("epoch") == kept and np.isfinite(row.get(SELECT, np.nan)):
            return dict(row)
    return best_epoch(history)
