"""Before a resume: drop the result rows that Tune's saved experiment state does not know of.

Tune's driver appends each trial's rows to result.json and progress.csv in a staging directory
and copies that directory, experiment state included, to the storage path in the background
(every second on local storage, tune_settings.py). A driver that dies while a copy runs (a
SIGKILL, a second Ctrl-C, a crash) can leave rows on the storage path that are newer than the
state copied with them. Tune then resumes the trial from the checkpoint of the last result the
state knows, trains the epochs after it again and appends them a second time (seen in a test:
epochs 1, 2, 2, 3, ...). Tune resumes a trial from the last checkpoint the state knows
(each report carries one unless --checkpoint-every spaces them), so the rows after that
report are removed before Tuner.restore (their epochs are trained again, bit-identically, and
reported once), and the run says how many.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint

from tune_cilp.core.atomic import atomic_output
from tune_cilp.core.json_shape import json_object

ITERATION = "training_iteration"  # Tune's own count of a trial's reports
CHECKPOINT_DIR_NAME = "checkpoint_dir_name"  # Tune's row key: the report's checkpoint folder


def saved_iterations(experiment: str | Path) -> dict[str, int]:
    """Trial id -> the last report the newest saved experiment state holds (0: none); {}
    when there is no readable state (Tune then starts over, repair_after_storage_failure)."""
    path = _find_newest_experiment_checkpoint(str(experiment))
    try:
        state = json_object(Path(path).read_text()) if path else {}
        trials = [(json_object(t), json_object(m)) for t, m in state.get("trial_data", [])]
        return {
            trial["trial_id"]: int((meta.get("last_result") or {}).get(ITERATION, 0))
            for trial, meta in trials
        }
    except (OSError, ValueError, TypeError, KeyError, AttributeError):  # not what Tune wrote
        return {}


def trim_unsaved_rows(experiment: str | Path) -> list[str]:
    """Remove each trial's rows after the last one the saved state knows of, from result.json
    and progress.csv (each rewritten atomically); one message per trial trimmed."""
    saved = saved_iterations(experiment)
    messages = []
    for result in sorted(Path(experiment).glob("*/result.json")):
        text = result.read_text()
        cut = _resumed_after(text, saved)
        if cut is None:  # rows are dropped only for a trial the state knows
            continue
        kept, dropped = _trim_json_lines(text, cut)
        if not dropped:
            continue
        with atomic_output(result, "w") as f:
            f.write(kept)
        progress = result.with_name("progress.csv")
        if progress.is_file():
            with open(progress, newline="") as f:
                csv_kept = _trim_csv(f.read(), cut)
            with atomic_output(progress, "w", newline="") as f:
                f.write(csv_kept)
        messages.append(
            f"{result.parent.name}: {dropped} epoch(s) reported after the last saved checkpoint "
            "are trained and reported again"
        )
    return messages


def _rows(text: str) -> list[tuple[str, dict]]:
    """(line, row) of each line of a result.json; row {} where the line does not parse."""
    out = []
    for line in text.splitlines(keepends=True):
        try:
            row = json.loads(line)
        except ValueError:
            row = {}
        out.append((line, row if isinstance(row, dict) else {}))
    return out


def _resumed_after(text: str, saved: dict[str, int]) -> int | None:
    """The report the trial resumes after: the last one the saved state knows of that carried a
    checkpoint (with --checkpoint-every not every report does; rows that name no checkpoint at
    all, from an older Ray, each had one); None for a trial the state does not know."""
    rows = [row for _, row in _rows(text) if row]
    trial_id = next((row.get("trial_id") for row in rows if row.get("trial_id")), None)
    if trial_id not in saved:
        return None
    last = saved[trial_id]
    if not any(CHECKPOINT_DIR_NAME in row for row in rows):
        return last
    known = [
        int(row[ITERATION])
        for row in rows
        if isinstance(row.get(ITERATION), int) and row[ITERATION] <= last
        and row.get(CHECKPOINT_DIR_NAME)
    ]  # fmt: skip
    return max(known, default=0)


def _trim_json_lines(text: str, cut: int) -> tuple[str, int]:
    """(the text without rows past report `cut`, rows dropped); a line that does not parse is
    kept as it is (the analysis reports it)."""
    kept, dropped = [], 0
    for line, row in _rows(text):
        try:
            past = int(row[ITERATION]) > cut
        except (KeyError, TypeError, ValueError):
            past = False
        if past:
            dropped += 1
        else:
            kept.append(line)
    return "".join(kept), dropped


def _trim_csv(text: str, last: int) -> str:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or ITERATION not in rows[0]:
        return text
    column = rows[0].index(ITERATION)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if "\r\n" in text else "\n")
    writer.writerow(rows[0])
    for row in rows[1:]:
        if len(row) > column and row[column].isdigit() and int(row[column]) > last:
            continue
        writer.writerow(row)
    return out.getvalue()
