"""Racing seeds the Ray Tune way (--race): a Searcher that suggests (variant, seed) trials on
demand and says FINISHED when the race is decided.

What to run next is the judge's to say (the analysis's `RaceJudge`, handed in by the command:
this layer imports no analysis): a pure function of the finished trials' stored scores
(PREDICTIONS_FILE in each trial's last checkpoint, read back from the experiment's storage) to
the trials the next look needs and whether the race has stopped. So the searcher's own memory is
which trial runs which (variant, seed) and where each finished one left its scores, saved as
JSON with Tune's experiment state; a resumed race re-reads the scores and re-derives every
decision, and no (variant, seed) is suggested twice.

A trial that fails (after --max-failures) leaves its look without a seed: no new trial starts,
the experiment ends with the failure's one line, and the re-run retries it (Tune's
resume_errored) and carries the race on from there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ray.tune.search import Searcher, SearchGenerator

from tune_cilp.core.atomic import atomic_output
from tune_cilp.core.errors import UserError
from tune_cilp.core.json_shape import json_object
from tune_cilp.core.path_guard import check_readable_file
from tune_cilp.core.predictions import PREDICTIONS_FILE, Predictions
from tune_cilp.core.stored import read_bytes

MAX_SEEDS = 10  # --max-seeds' default
ALPHA = 0.05  # --alpha's default: the race's family-wise error rate over all its looks
SEED_KEY = "seed"
CHECKPOINT_DIR = "checkpoint_dir_name"  # Tune's result key: the report's checkpoint folder
DONE = "done"  # Tune's result key: True on the result of a trial that ran to its end
Trial = tuple[str, int]  # (variant, seed)


@dataclass(frozen=True)
class RaceStep:
    """The judge's word on the finished trials: the trials the next look still needs (in the
    order to start them) and whether the race has stopped."""

    next_trials: tuple[Trial, ...]
    decided: bool


Judge = Callable[[Mapping[Trial, Predictions]], RaceStep]


@dataclass(frozen=True)
class RacePlan:
    """What the command hands a driver for --race: each variant's config (in the race's
    order), the judge, and the design as tune_cilp.json records it."""

    configs: dict[str, dict[str, Any]]
    judge: Judge
    record: dict[str, Any]
    first_trials: int  # seeds per variant before the first look (for the CPU plan)


class RaceSearcher(Searcher):
    """Suggests the trials the race's next look needs, one per call, until it is decided.

    configs: each variant's config (what sets it apart; Tune merges it over the param space)
    in the race's variant order. location: the experiment's path or URI, where finished trials'
    scores are read. Tune pickles the searcher into the experiment (tuner.pkl); an instance
    pickles as a reference to this driver's own (``current()``), built from this run's
    settings, and Tune's restore then hands it the saved JSON memory (``restore``)."""

    def __reduce__(self) -> tuple:
        return (current, ())

    def __init__(
        self,
        configs: Mapping[str, Mapping[str, Any]],
        judge: Judge,
        location: str,
        metric: str,
        mode: str,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.configs = {name: dict(config) for name, config in configs.items()}
        self.judge = judge
        self.location = location.rstrip("/")
        self.trials: dict[str, Trial] = {}  # trial id -> its (variant, seed), every one started
        self.finished: dict[str, str] = {}  # trial id -> its scores' path in the experiment
        self.unfinished: set[str] = set()
        self._scores: dict[Trial, Predictions] = {}
        self.step = judge({})

    # What Tune asks -------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.unfinished:  # a look without its seed: wait for the re-run (module docstring)
            return None if self._live() else Searcher.FINISHED
        started = set(self.trials.values())
        todo = [trial for trial in self.step.next_trials if trial not in started]
        if not todo:
            return Searcher.FINISHED if self.step.decided and not self._live() else None
        variant, seed = self.trials[trial_id] = todo[0]
        return {**self.configs[variant], SEED_KEY: seed}

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if trial_id not in self.trials:
            return
        if error or not result or not result.get(DONE) or not result.get(CHECKPOINT_DIR):
            self.unfinished.add(trial_id)  # failed or stopped: no scores for its look
            return
        self.unfinished.discard(trial_id)
        self.finished[trial_id] = f"{self.trial_dirname(trial_id)}/{result[CHECKPOINT_DIR]}"
        self._read(trial_id)
        self.step = self.judge(self._scores)

    def trial_dirname(self, trial_id: str) -> str:
        """A race trial's folder: its id, variant and seed (Tune's trial_dirname_creator)."""
        variant, seed = self.trials[trial_id]
        return f"{trial_id}_{variant}_{SEED_KEY}={seed}"

    def dirname_of(self, trial: Any) -> str:
        return self.trial_dirname(trial.trial_id)

    # Tune's experiment state ---------------------------------------------------------------
    def save(self, checkpoint_path: str) -> None:
        state = {
            "trials": {tid: list(trial) for tid, trial in self.trials.items()},
            "finished": self.finished,
        }
        with atomic_output(checkpoint_path, "w") as f:
            f.write(json.dumps(state, indent=1))

    def restore(self, checkpoint_path: str) -> None:
        path = check_readable_file(checkpoint_path)
        try:
            state = json_object(path.read_text())
            trials = {str(t): (str(v), int(s)) for t, (v, s) in state["trials"].items()}
            finished = {str(t): str(p) for t, p in state["finished"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"{path}: not a race's saved state ({exc})") from None
        unknown = {v for v, _ in trials.values()} - set(self.configs)
        if unknown or not set(finished) <= set(trials):
            raise UserError(f"{path}: a race of other variants ({', '.join(sorted(unknown))})")
        # The trials that failed or stopped are Tune's to run again now (resume_errored).
        self.trials, self.finished, self.unfinished = trials, finished, set()
        self._scores = {}
        for trial_id in finished:
            self._read(trial_id)
        self.step = self.judge(self._scores)

    # Internals ------------------------------------------------------------------------------
    def _live(self) -> bool:
        return any(t not in self.finished and t not in self.unfinished for t in self.trials)

    def _read(self, trial_id: str) -> None:
        path = f"{self.location}/{self.finished[trial_id]}/{PREDICTIONS_FILE}"
        try:
            text = read_bytes(path)
        except OSError as exc:
            raise UserError(f"{path}: cannot read a finished race trial's scores ({exc})") from None
        if text is None:
            raise UserError(f"{path}: a finished race trial's scores are missing")
        self._scores[self.trials[trial_id]] = Predictions.from_json(text, source=path)


class RaceSearch(SearchGenerator):
    """Tune's SearchGenerator over a RaceSearcher, but for one thing: whether the race is
    finished is the searcher's to say on every run, never the saved flag (a race that ended on
    a failed trial goes on when the re-run retries it)."""

    def set_state(self, state: dict) -> None:
        super().set_state({**state, "finished": False})


_CURRENT: RaceSearcher | None = None


def fresh(
    configs: Mapping[str, Mapping[str, Any]], judge: Judge, location: str, metric: str, mode: str
) -> RaceSearch:
    """This driver's race search; ``current()`` returns its searcher from now on."""
    global _CURRENT
    _CURRENT = RaceSearcher(configs, judge, location, metric, mode)
    return RaceSearch(_CURRENT)


def current() -> RaceSearcher:
    """This driver's race searcher (what a pickled one turns into when Tune restores it)."""
    if _CURRENT is None:
        raise UserError("a race experiment resumed without --race: re-run it with --race")
    return _CURRENT
