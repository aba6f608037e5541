"""The race's Tune searcher on scripted trials (no training, no Ray cluster): what it suggests
and when, what counts as finished (the stored scores of the last epoch, not Tune's result), a
failed trial, and its memory saved and restored as Tune does on a resume.

Each finished trial is a real checkpoint folder under the experiment holding predictions.json,
as a trial writes it; the judge is the analysis's RaceJudge (the one the command hands in)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from ray.tune.search import Searcher

from analysis.race import RaceDesign
from analysis.race_report import RaceJudge
from tune_cilp.core.errors import UserError
from tune_cilp.core.predictions import Predictions, Scores, write_predictions
from tune_cilp.experiment import race_search
from tune_cilp.experiment.race_search import RacePlan, fresh

EPOCHS = 2
LABELS = np.array([0] * 12 + [1] * 3)
IDS = np.array([f"scene/{i:02d}" for i in range(len(LABELS))])
CONFIGS = {"a": {"downsample": "maxpool"}, "b": {"downsample": "stride"}}
# Per variant, each seed's validation loss: every scene scored exp(-loss) on its own class.
CLEAR = {"a": [0.10, 0.11, 0.12, 0.13, 0.14], "b": [0.60, 0.61, 0.62, 0.63, 0.64]}
EQUAL = {"a": [0.30, 0.35, 0.40, 0.45, 0.50], "b": [0.31, 0.36, 0.41, 0.46, 0.51]}


def searcher(tmp_path: Path, max_seeds: int = 5) -> race_search.RaceSearcher:
    design = RaceDesign(tuple(CONFIGS), max_seeds=max_seeds)
    plan = RacePlan(CONFIGS, RaceJudge(design), {}, design.n0)
    fresh(plan, str(tmp_path), EPOCHS, "val_loss", "min")
    return race_search.current()


def scores(loss: float) -> np.ndarray:
    right = np.exp(-loss)
    return np.where(LABELS == 1, right, 1 - right)


def finish(s: race_search.RaceSearcher, trial_id: str, losses: dict, epoch: int = EPOCHS) -> None:
    """The trial's checkpoint of `epoch` stored, then Tune's word that it completed."""
    variant, seed = s.trials[trial_id]
    proba = scores(losses[variant][seed - 51])
    record = Predictions(IDS, LABELS, Scores(epoch, proba), Scores(epoch, proba))
    folder = Path(s.location) / s.trial_dirname(trial_id) / f"checkpoint_{epoch - 1:06d}"
    folder.mkdir(parents=True)
    write_predictions(folder, record)
    s.on_trial_complete(trial_id, result={"done": True})


def suggest_all(s: race_search.RaceSearcher, start: int) -> list[str]:
    """Ask until the searcher has nothing more now; the trial ids it filled."""
    ids = []
    while True:
        trial_id = f"t{start + len(ids)}"
        config = s.suggest(trial_id)
        if not isinstance(config, dict):
            return ids
        assert config["seed"] == s.trials[trial_id][1]
        assert config["downsample"] == CONFIGS[s.trials[trial_id][0]]["downsample"]
        ids.append(trial_id)


def test_first_look_then_only_the_undecided_get_seeds(tmp_path: Path) -> None:
    s = searcher(tmp_path)
    first = suggest_all(s, 0)
    assert [s.trials[t] for t in first] == [("a", 51), ("a", 52), ("a", 53), ("b", 51),
                                            ("b", 52), ("b", 53)]  # fmt: skip
    assert s.suggest("t99") is None  # running: nothing more until a look is complete
    for trial_id in first[:-1]:
        finish(s, trial_id, EQUAL)
        assert s.suggest("t99") is None and not s.step.looks
    finish(s, first[-1], EQUAL)  # look 1 complete: equal variants both go on
    assert len(s.step.looks) == 1 and "nobody eliminated" in s.step.looks[0]
    second = suggest_all(s, 10)
    assert sorted(s.trials[t] for t in second) == [("a", 54), ("b", 54)]


def test_a_decided_race_says_finished_once_nothing_runs(tmp_path: Path) -> None:
    s = searcher(tmp_path)
    first = suggest_all(s, 0)
    for trial_id in first:
        finish(s, trial_id, CLEAR)
    assert s.step.decided and "b: worse than a" in s.step.looks[0]
    assert s.suggest("t99") == Searcher.FINISHED
    assert sorted(set(s.trials.values())) == sorted(s.trials.values())  # none twice


def test_a_checkpoint_before_the_last_epoch_is_not_a_finished_trial(tmp_path: Path) -> None:
    s = searcher(tmp_path)
    first = suggest_all(s, 0)
    finish(s, first[0], EQUAL, epoch=EPOCHS - 1)  # stopped (Ctrl-C) after its first epoch
    assert first[0] in s.unfinished and first[0] not in s.finished


def test_a_failed_trial_stops_new_trials_and_the_rerun_goes_on(tmp_path: Path) -> None:
    s = searcher(tmp_path)
    first = suggest_all(s, 0)
    s.on_trial_complete(first[0], error=True)
    for trial_id in first[1:5]:
        finish(s, trial_id, EQUAL)
    assert s.suggest("t99") is None  # one still runs
    finish(s, first[5], EQUAL)
    assert s.suggest("t99") == Searcher.FINISHED  # its look cannot be taken: the run ends
    s.save(str(tmp_path / "race-state.json"))

    again = searcher(tmp_path)  # the re-run: Tune retries the failed trial (resume_errored)
    again.restore(str(tmp_path / "race-state.json"))
    assert again.unfinished == set() and not again.step.looks
    assert again.suggest("t99") is None  # the retried trial runs
    finish(again, first[0], EQUAL)
    assert len(again.step.looks) == 1 and suggest_all(again, 20)  # look 2's seeds


def test_restored_memory_rederives_every_decision_and_repeats_no_trial(tmp_path: Path) -> None:
    s = searcher(tmp_path)
    for trial_id in suggest_all(s, 0):
        finish(s, trial_id, EQUAL)
    running = suggest_all(s, 10)  # look 2's two trials started, not finished
    s.save(str(tmp_path / "race-state.json"))
    saved = json.loads((tmp_path / "race-state.json").read_text())
    assert set(saved) == {"trials", "finished"}  # plain JSON, nothing pickled

    again = searcher(tmp_path)
    again.restore(str(tmp_path / "race-state.json"))
    assert again.step == s.step and again.trials == s.trials
    assert again.suggest("t99") is None  # look 2's trials are Tune's to resume, not new ones
    for trial_id in running:
        finish(again, trial_id, EQUAL)
    assert len(again.step.looks) == 2


def test_the_pickled_searcher_is_this_drivers_own(tmp_path: Path) -> None:
    old = searcher(tmp_path)
    blob = pickle.dumps(old)  # Tune puts its searcher into tuner.pkl
    new = searcher(tmp_path / "moved")  # the next run's, with this run's settings
    assert pickle.loads(blob) is new


@pytest.mark.parametrize(
    "text",
    ["[]", "{}", '{"trials": {"x": ["c", 51]}, "finished": {}}', '{"trials": 3, "finished": {}}'],
)
def test_a_bad_saved_state_is_one_line(tmp_path: Path, text: str) -> None:
    (tmp_path / "race-state.json").write_text(text)
    with pytest.raises(UserError) as refused:
        searcher(tmp_path).restore(str(tmp_path / "race-state.json"))
    assert str(refused.value).startswith(str(tmp_path / "race-state.json"))
    assert "\n" not in str(refused.value)
