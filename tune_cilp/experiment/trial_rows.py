"""Before a resume: drop the result rows that Tune's saved experiment state does not know of.

Tune's driver appends each trial's rows to result.json and progress.csv in a staging directory
and copies that directory, experiment state included, to the storage path in the background
(every second on local storage, tune_settings.py). A driver that dies while a copy runs (a
SIGKILL, a second Ctrl-C, a crash) can leave rows on the storage path that are newer than the
state copied with them. Tune then resumes the trial from the checkpoint of the last result the
state knows, trains the epochs after it again and appends them a second time (seen in a test:
epochs 1, 2, 2, 3, ...). Every report here carries its checkpoint, so the state's last result
names the epoch the trial resumes after; the rows after it are removed before Tuner.restore
(their epochs are trained again, bit-identically), and the run says how many.
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
        kept, dropped, trial_id = _trim_json_lines(result.read_text(), saved)
        if not dropped:  # rows are dropped only for a trial the state knows
            continue
        with atomic_output(result, "w") as f:
            f.write(kept)
        progress = result.with_name("progress.csv")
        if progress.is_file():
            with open(progress, newline="") as f:
                csv_kept = _trim_csv(f.read(), saved[trial_id])
            with atomic_output(progress, "w", newline="") as f:
                f.write(csv_kept)
        messages.append(
            f"{result.parent.name}: {dropped} epoch(s) reported after the last saved state "
            "are trained and reported again"
        )
    return messages


def _trim_json_lines(text: str, saved: dict[str, int]) -> tuple[str, int, str | None]:
    """(the text without rows past the trial's saved report, rows dropped, trial id); a line
    that does not parse is kept as it is (the analysis reports it)."""
    kept, dropped, trial_id = [], 0, None
    for line in text.splitlines(keepends=True):
        try:
            row = json.loads(line)
            trial_id = trial_id or row["trial_id"]
            past = trial_id in saved and int(row[ITERATION]) > saved[trial_id]
        except (ValueError, KeyError, TypeError):
            past = False
        if past:
            dropped += 1
        else:
            kept.append(line)
    return "".join(kept), dropped, trial_id


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
