"""Pickle payloads for the safe-loading tests: what a malicious checkpoint or experiment folder
would carry."""

from __future__ import annotations

import json
import os
from pathlib import Path


class MkdirOnLoad:
    """Pickles to a call of os.mkdir: loading it unsafely would create a directory."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.path,))


TRIAL_PICKLES = ("params.pkl", "error.pkl")  # Tune writes error.pkl only for a failed trial


def blob(marker: Path) -> dict[str, str]:
    """Tune's JSON marker of a cloudpickled value, carrying a payload that creates `marker`."""
    from ray import cloudpickle

    return {"_type": "CLOUDPICKLE_FALLBACK", "value": cloudpickle.dumps(MkdirOnLoad(marker)).hex()}


def plant(experiment: Path, marker: Path) -> int:
    """Plant payloads that create `marker` when loaded unsafely into every Tune experiment folder
    under `experiment` (a CILP experiment has one per stage): a blob in each state file's runner
    data and in every trial's storage field and last result, and pickle files in place of
    tuner.pkl, params.pkl and error.pkl. Returns how many files were planted."""
    import pickle

    planted = 0
    payload = pickle.dumps(MkdirOnLoad(marker))
    for state_file in sorted(experiment.rglob("experiment_state-*.json")):
        state = json.loads(state_file.read_text())
        state["runner_data"] = blob(marker)
        trials = []
        for trial_json, meta_json in state["trial_data"]:
            trial, meta = json.loads(trial_json), json.loads(meta_json)
            trial["storage"] = blob(marker)
            meta["last_result"]["planted"] = blob(marker)
            trials.append([json.dumps(trial), json.dumps(meta)])
        state["trial_data"] = trials
        state_file.write_text(json.dumps(state))
        planted += 1
        folder = state_file.parent
        trial_dirs = [d for d in folder.iterdir() if (d / "params.json").is_file()]
        targets = [folder / "tuner.pkl", *(d / n for d in trial_dirs for n in TRIAL_PICKLES)]
        for path in targets:
            path.write_bytes(payload)
        planted += len(targets)
    return planted
