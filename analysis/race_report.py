"""A race (--race) as the command runs it and the analysis reads it back: the judge the race's
Tune searcher asks (RaceJudge), the design recorded in tune_cilp.json, and the race's own report
re-derived from the stored trials (who was eliminated at which look and why, the answer, the
seeds spent against the fixed design, each variant's interval narrowing look by look).

Both sides decide on the same bytes: each finished trial's PREDICTIONS_FILE (its verdict
scores: the last epoch's validation scores, or the held-out test scores), so the analysis of a
race re-derives exactly the decisions the run took, interrupted or not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from analysis.inference import Interval, metric_interval
from analysis.race import (
    EQUIVALENT,
    MAX_SEEDS_REACHED,
    ONE_LEFT,
    RUNNING,
    RaceDesign,
    RaceState,
    SeedScores,
    decide,
)
from analysis.scenes import read_predictions
from analysis.stats import SEED_KEY, TrialResult
from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import TRIAL_METRICS
from tune_cilp.core.predictions import Predictions
from tune_cilp.experiment.race_search import RaceStep, Trial

WHY = {
    ONE_LEFT: "one variant left",
    EQUIVALENT: "the variants left are equivalent within the margin",
    MAX_SEEDS_REACHED: "max seeds reached with more than one variant left",
}


def design_record(design: RaceDesign, configs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """What tune_cilp.json records of a race: its design and each variant's config."""
    return {
        "variants": {name: dict(configs[name]) for name in design.variants},
        "max_seeds": design.max_seeds,
        "alpha": design.alpha,
        "margin": design.margin,
        "metric": design.metric,
        "first_seed": design.first_seed,
    }


def design_of(record: Mapping[str, Any]) -> tuple[RaceDesign, dict[str, dict[str, Any]]]:
    """The design and variant configs a tune_cilp.json race record holds; UserError if it is
    not one."""
    try:
        configs = {str(k): dict(v) for k, v in record["variants"].items()}
        design = RaceDesign(
            tuple(configs),
            max_seeds=int(record["max_seeds"]),
            alpha=float(record["alpha"]),
            margin=None if record["margin"] is None else float(record["margin"]),
            metric=str(record["metric"]),
            first_seed=int(record["first_seed"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"the race's record in tune_cilp.json is not one ({exc})") from None
    return design, configs


def scores_of(
    finished: Mapping[Trial, Predictions],
) -> tuple[np.ndarray, dict[str, list[SeedScores]]]:
    """The labels and each variant's per-seed verdict scores of the finished trials, all on
    the same scenes (UserError naming a trial scored on others)."""
    results: dict[str, list[SeedScores]] = {}
    ids = labels = None
    for (variant, seed), pred in sorted(finished.items()):
        these_ids, these_labels, proba = pred.verdict()
        if ids is None:
            ids, labels = these_ids, these_labels
        elif not (np.array_equal(ids, these_ids) and np.array_equal(labels, these_labels)):
            raise UserError(
                f"--race: {variant} seed {seed} was scored on other scenes than the race's "
                "first trial (different data or test split)"
            )
        results.setdefault(variant, []).append(SeedScores(seed, proba))
    return (np.empty(0) if labels is None else labels), results


@dataclass(frozen=True)
class RaceJudge:
    """The race searcher's judge: the design's decision on the finished trials."""

    design: RaceDesign

    def __call__(self, finished: Mapping[Trial, Predictions]) -> RaceStep:
        labels, results = scores_of(finished)
        state = decide(self.design, labels, results)
        return RaceStep(state.next_trials, state.outcome != RUNNING, look_lines(state))


def look_lines(state: RaceState) -> tuple[str, ...]:
    """One line per look: seeds, who went and why, who is left, what next."""
    lines = []
    for look in state.looks:
        gone = "; ".join(e.reason for e in look.eliminated) or "nobody eliminated"
        then = "one more seed each" if look.outcome == RUNNING else f"stop ({WHY[look.outcome]})"
        lines.append(
            f"race look {look.number} ({look.seeds} seeds each): {gone}; left: "
            f"{', '.join(look.survivors)}; {then}"
        )
    return tuple(lines)


@dataclass(frozen=True)
class RaceReport:
    """A race read back: its state (looks, survivors, outcome), each look's interval of every
    variant it compared (look number -> variant -> Interval on that look's seeds)."""

    state: RaceState
    intervals: dict[int, dict[str, Interval]]

    @property
    def trials_used(self) -> int:
        return sum(self.state.seeds_used.values())

    def answer(self) -> str:
        """The race's verdict in one sentence."""
        s, d = self.state, self.state.design
        spent = (
            f"{self.trials_used} trials against the fixed design's {d.fixed_trials} "
            f"({d.max_seeds} seeds for each of {len(d.variants)} variants, the same error rate)"
        )
        if s.outcome == RUNNING:
            waiting = ", ".join(f"{v} seed {seed}" for v, seed in s.next_trials)
            look = len(s.looks) + 1
            return f"not decided yet: look {look} waits for {waiting}; {spent} so far"
        best = ", ".join(s.confidence_set)
        level = f"{1 - d.alpha:.0%}"
        if s.outcome == ONE_LEFT:
            head = f"{s.winner} is the best on {d.metric} (the others shown worse)"
        elif s.outcome == EQUIVALENT:
            head = f"{best} are equivalent within {d.margin:g} on {d.metric}"
        else:
            head = f"not decided at {d.max_seeds} seeds: the best is one of {best}"
        return (
            f"{head}; the set {{{best}}} holds the truly best variant with {level} confidence "
            f"over all {len(s.looks)} look(s) (stopped: {WHY[s.outcome]}); {spent}"
        )

    def rows(self) -> list[list[str]]:
        """One row per look: seeds, the variants compared (best observed first), who went and
        why, the outcome."""
        out = []
        for look in self.state.looks:
            gone = "; ".join(e.reason for e in look.eliminated) or "none"
            out.append([str(look.number), str(look.seeds), ", ".join(look.compared), gone,
                        look.outcome])  # fmt: skip
        return out

    def to_dict(self) -> dict[str, Any]:
        s = self.state
        return {
            "design": {**asdict(s.design), "variants": list(s.design.variants)},
            "outcome": s.outcome,
            "confidence_set": list(s.confidence_set),
            "winner": s.winner,
            "seeds_used": s.seeds_used,
            "trials_used": self.trials_used,
            "fixed_design_trials": s.design.fixed_trials,
            "looks": [
                {
                    "look": look.number,
                    "seeds": look.seeds,
                    "compared": list(look.compared),
                    "eliminated": [asdict(e) for e in look.eliminated],
                    "survivors": list(look.survivors),
                    "outcome": look.outcome,
                    "intervals": {v: asdict(i) for v, i in self.intervals[look.number].items()},
                }
                for look in s.looks
            ],
            "waiting_for": [list(t) for t in s.next_trials],
            "answer": self.answer(),
        }


HEADERS = ["Look", "Seeds", "Compared (best first)", "Eliminated (why)", "Then"]


def race_report(
    design: RaceDesign,
    configs: Mapping[str, Mapping[str, Any]],
    trials: Sequence[TrialResult],
) -> RaceReport:
    """The race re-derived from an experiment's trials: each finished (TERMINATED) trial is
    matched to its variant by the recorded configs and read from its stored scores."""
    finished: dict[Trial, Predictions] = {}
    for t in trials:
        variant = _variant_of(t.config, configs)
        if variant is None or t.status != "TERMINATED":
            continue
        pred = read_predictions(t)
        if isinstance(pred, str):
            raise UserError(
                f"race trial {t.trial_id} ({variant} seed {t.config.get(SEED_KEY)}): {pred}"
            )
        finished[(variant, int(t.config[SEED_KEY]))] = pred
    labels, results = scores_of(finished)
    state = decide(design, labels, results)
    proba = {v: {r.seed: r.proba for r in rs} for v, rs in results.items()}
    intervals = {
        look.number: {
            v: metric_interval(
                np.stack([proba[v][s] for s in design.seeds[: look.seeds]]), labels, design.metric
            )
            for v in look.compared
        }
        for look in state.looks
    }
    return RaceReport(state, intervals)


def _variant_of(config: Mapping[str, Any], configs: Mapping[str, Mapping[str, Any]]) -> str | None:
    for name, fields in configs.items():
        if all(config.get(k) == v for k, v in fields.items()):
            return name
    return None


def race_notes(report: RaceReport) -> list[str]:
    """The lines under the race's table."""
    d = report.state.design
    goal = TRIAL_METRICS[d.metric].goal
    return [
        f"Race on {d.metric} ({'lower' if goal == 'min' else 'higher'} is better), alpha "
        f"{d.alpha:g} spent over at most {d.looks} looks (each at {d.look_alpha:.3g}, Holm over "
        "the pairs); every variant starts with "
        f"{d.n0} seeds (from seed {d.first_seed}) and a survivor gets one more per look"
        + (f"; equivalence margin {d.margin:g}" if d.margin is not None else "")
        + ". The table's p-values above are per comparison and ignore that seeds were added "
        "while looking: the race's answer is the one that holds its error rate.",
        "Race: " + report.answer() + ".",
    ]
