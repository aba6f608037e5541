"""A race read back by the analysis (analysis/race_report.py) from stored trials: the same
decisions as the run's searcher took, its table and answer for a finished and an interrupted
race, its JSON, and its record in tune_cilp.json. The trials are real checkpoint folders with
predictions.json (helpers.scene_trial), scored so the loss of each seed is scripted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import SCENE_LABELS, scene_trial

from analysis.race import RaceDesign
from analysis.race_report import design_of, design_record, look_lines, race_notes, race_report
from analysis.stats import TrialResult
from tune_cilp.core.errors import UserError

CONFIGS = {"concat-maxpool": {"variant": "concat"}, "late-maxpool": {"variant": "late"}}
CLEAR = {"concat": [0.10, 0.11, 0.12], "late": [0.60, 0.61, 0.62]}
EQUAL = {"concat": [0.30, 0.35, 0.40, 0.45], "late": [0.31, 0.36, 0.41, 0.46]}


def scores(loss: float) -> np.ndarray:
    right = np.exp(-loss)
    return np.where(SCENE_LABELS == 1, right, 1 - right)


def stored(tmp_path: Path, losses: dict[str, list[float]]) -> list[TrialResult]:
    return [
        scene_trial(tmp_path, variant, 51 + i, scores(loss))
        for variant, values in losses.items()
        for i, loss in enumerate(values)
    ]


def test_a_decided_race_reads_back_with_its_answer(tmp_path: Path) -> None:
    design = RaceDesign(tuple(CONFIGS), max_seeds=4)
    report = race_report(design, CONFIGS, stored(tmp_path, CLEAR))
    state = report.state
    assert state.outcome == "one left" and state.winner == "concat-maxpool"
    assert state.seeds_used == {"concat-maxpool": 3, "late-maxpool": 3}
    (row,) = report.rows()
    assert row[:3] == ["1", "3", "concat-maxpool, late-maxpool"]
    assert row[3].startswith("late-maxpool: worse than concat-maxpool by +0.5")
    answer = report.answer()
    assert answer.startswith("concat-maxpool is the best on val_loss (the others shown worse)")
    assert "6 trials against the fixed design's 8" in answer
    assert look_lines(state)[0].startswith("race look 1 (3 seeds each): late-maxpool: worse")
    notes = race_notes(report)
    assert "alpha 0.05 spent over at most 2 looks (each at 0.025" in notes[0]
    data = report.to_dict()
    json.dumps(data)  # JSON-ready
    assert data["trials_used"] == 6 and data["fixed_design_trials"] == 8
    assert data["looks"][0]["eliminated"][0]["variant"] == "late-maxpool"
    interval = data["looks"][0]["intervals"]["concat-maxpool"]
    assert interval["low"] <= interval["value"] <= interval["high"]


def test_an_interrupted_race_says_what_its_next_look_waits_for(tmp_path: Path) -> None:
    design = RaceDesign(tuple(CONFIGS), max_seeds=5)
    trials = stored(tmp_path, EQUAL)[:-1]  # late-maxpool's seed 54 has not finished
    report = race_report(design, CONFIGS, trials)
    assert report.state.outcome == "running" and len(report.state.looks) == 1
    assert report.answer().startswith("not decided yet: look 2 waits for late-maxpool seed 54")


def test_unfinished_trials_and_other_configs_are_not_counted(tmp_path: Path) -> None:
    design = RaceDesign(tuple(CONFIGS), max_seeds=4)
    trials = stored(tmp_path, CLEAR)
    trials[0].status = "RUNNING"  # concat seed 51: its scores are not its last epoch's yet
    trials.append(scene_trial(tmp_path, "early", 51, scores(0.01)))  # not a race variant
    report = race_report(design, CONFIGS, trials)
    assert report.state.outcome == "running" and not report.state.looks
    assert report.state.next_trials == (("concat-maxpool", 51),)


def test_the_design_round_trips_through_tune_cilp_json() -> None:
    design = RaceDesign(tuple(CONFIGS), max_seeds=6, alpha=0.1, margin=0.05)
    record = json.loads(json.dumps(design_record(design, CONFIGS)))
    assert design_of(record) == (design, CONFIGS)
    with pytest.raises(UserError, match="^the race's record in tune_cilp.json is not one"):
        design_of({**record, "max_seeds": "many"})
