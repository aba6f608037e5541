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
from tune_cilp.core.stored import list_names, read_bytes

MAX_SEEDS = 10  # --max-seeds' default
ALPHA = 0.05  # --alpha's default: the race's family-wise error rate over all its looks
SEED_KEY = "seed"
CHECKPOINT_PREFIX = "checkpoint_"  # Tune's checkpoint folders: checkpoint_000000, ...
Trial = tuple[str, int]  # (variant, seed)


@dataclass(frozen=True)
class RaceStep:
    """The judge's word on the finished trials: the trials the next look still needs (in the
    order to start them) and whether the race has stopped."""

    next_trials: tuple[Trial, ...]
    decided: bool
    looks: tuple[str, ...] = ()  # one line per look taken so far, printed as the race goes


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

    CKPT_FILE_TMPL = "race-state-{}.json"  # plain JSON (Tune's default name says .pkl)

    def __reduce__(self) -> tuple:
        return (current, ())

    def __init__(
        self,
        configs: Mapping[str, Mapping[str, Any]],
        judge: Judge,
        location: str,
        epochs: int,
        metric: str,
        mode: str,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.epochs = epochs  # every race trial's: its scores of this epoch mean it finished
        self.configs = {name: dict(config) for name, config in configs.items()}
        self.judge = judge
        self.location = location.rstrip("/")
        self.trials: dict[str, Trial] = {}  # trial id -> its (variant, seed), every one started
        self.finished: dict[str, str] = {}  # trial id -> its scores' path in the experiment
        self.unfinished: set[str] = set()
        self._scores: dict[Trial, Predictions] = {}
        self._printed = False
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
        found = None if error else self._last_scores(trial_id)
        if found is None:
            self.unfinished.add(trial_id)  # failed or stopped: no scores for its look
            return
        self.unfinished.discard(trial_id)
        self.finished[trial_id], self._scores[self.trials[trial_id]] = found
        self._judge()

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
        self._scores, self._printed = {}, False
        for trial_id, where in finished.items():
            self._scores[trials[trial_id]] = self._read(where)
        self._judge()

    # Internals ------------------------------------------------------------------------------
    def _judge(self) -> None:
        """The judge's word on the finished trials; the looks it took since the last one are
        printed (after a resume: every look so far, once)."""
        before = len(self.step.looks) if self._printed else 0
        self.step = self.judge(self._scores)
        for line in self.step.looks[before:]:
            print(line, flush=True)
        self._printed = True

    def _live(self) -> bool:
        return any(t not in self.finished and t not in self.unfinished for t in self.trials)

    def _last_scores(self, trial_id: str) -> tuple[str, Predictions] | None:
        """The trial's newest checkpoint (its folder in the experiment) and its scores if they
        are of its last epoch, else None. Read from the storage, not from Tune's last result:
        after a killed driver, Tune's restored record of a trial can be older than its files."""
        folder = self.trial_dirname(trial_id)
        try:
            names = list_names(f"{self.location}/{folder}")
        except OSError as exc:
            raise UserError(f"{self.location}/{folder}: cannot list a race trial ({exc})") from None
        checkpoints = [name for name in names if name.startswith(CHECKPOINT_PREFIX)]
        if not checkpoints:
            return None
        where = f"{folder}/{max(checkpoints)}"
        pred = self._read(where)
        return (where, pred) if pred.last.epoch == self.epochs else None

    def _read(self, where: str) -> Predictions:
        path = f"{self.location}/{where}/{PREDICTIONS_FILE}"
        try:
            text = read_bytes(path)
        except OSError as exc:
            raise UserError(f"{path}: cannot read a race trial's scores ({exc})") from None
        if text is None:
            raise UserError(f"{path}: a race trial's checkpoint has no scores")
        return Predictions.from_json(text, source=path)


class RaceSearch(SearchGenerator):
    """Tune's SearchGenerator over a RaceSearcher, but for one thing: whether the race is
    finished is the searcher's to say on every run, never the saved flag (a race that ended on
    a failed trial goes on when the re-run retries it)."""

    def set_state(self, state: dict) -> None:
        super().set_state({**state, "finished": False})


_CURRENT: RaceSearcher | None = None


def fresh(plan: RacePlan, location: str, epochs: int, metric: str, mode: str) -> RaceSearch:
    """This driver's race search; ``current()`` returns its searcher from now on."""
    global _CURRENT
    _CURRENT = RaceSearcher(plan.configs, plan.judge, location, epochs, metric, mode)
    return RaceSearch(_CURRENT)


def current() -> RaceSearcher:
    """This driver's race searcher (what a pickled one turns into when Tune restores it)."""
    if _CURRENT is None:
        raise UserError("a race experiment resumed without --race: re-run it with --race")
    return _CURRENT
