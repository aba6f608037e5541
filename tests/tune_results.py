"""Read a Ray Tune experiment directory the way the tests check it: raw files, no Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_rows(path: Path) -> list[dict[str, Any]]:
    """result.json rows (one JSON object per line); a last line still being written is skipped."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def histories(experiment: Path) -> dict[str, list[dict[str, Any]]]:
    """Trial directory name -> every row the trial reported, in order."""
    return {p.parent.name: read_rows(p) for p in sorted(experiment.glob("*/result.json"))}


def trial_statuses(experiment: Path) -> dict[str, str]:
    """Trial id -> status in the latest experiment state Tune has synced to storage."""
    states = sorted(experiment.glob("experiment_state-*.json"))  # one per session, timestamped
    try:
        state = json.loads(states[-1].read_text())
    except (IndexError, OSError, json.JSONDecodeError):  # not there yet, or being rewritten
        return {}
    trials = (json.loads(trial_json) for trial_json, _ in state["trial_data"])
    return {trial["trial_id"]: trial["status"] for trial in trials}
