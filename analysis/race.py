"""Racing seeds (issue 32): seeds go only to the variants still in question.

Every variant starts with `n0` seeds. At look r each survivor has its first n0 + r - 1 seeds of
the design's seed order, and the survivors are compared as the ranking compares variants
(analysis.inference.best_set: every pair, Holm-corrected, seeds with k - 1 df plus the scenes
they share), at the look's share of alpha. A variant shown worse than another is eliminated;
the others get one more seed each. The race stops when one variant is left, when every pair of
survivors is shown equivalent within the margin (two one-sided tests at the same level), or at
max_seeds.

Alpha is spent over the looks by Bonferroni: each of the design's most looks gets
alpha / looks. Over the pairs, Holm, on the survivors' pairs plus, counted as never rejected,
every pair of a survivor and a variant eliminated before: a truly best variant's pairs then
weigh as they did at the start whatever went, so each look errs (eliminates a truly best
variant; with all equal, any variant) with probability at most its level, and
the race at most alpha over all its looks, whatever the correlation between them. What that
needs of each look, a test that holds its level far out in the tail, fails at 2 seeds and
holds from 3 on as far as simulation tells, so n0 is 3 (docs/STATISTICS.md, "Racing seeds";
measured by benchmarks/bench_calibration.py).

`decide` is a pure function of the design and the finished trials: a look uses exactly its
seeds (extra finished trials are ignored until their look), so a resumed race re-derives every
past decision identically and none is taken twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from analysis.bootstrap import holm
from analysis.inference import BestSet, best_set
from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import SCENE_METRICS, SELECT, TRIAL_METRICS
from tune_cilp.data.constants import DEFAULT_SEED
from tune_cilp.experiment.race_search import ALPHA, MAX_SEEDS

# n0: the fewest seeds at which the all-pairs test holds a look's level (alpha / looks, far out
# in the t's tail) as far as 1,000 simulated looks can tell: with 2 seeds per variant it called
# equal variants different twice as often as that (0.013 at 0.00625), with 3 0.010, within the
# simulation's error of the level (docs/STATISTICS.md, "Racing seeds").
FIRST_SEEDS = 3
# Outcomes: still running, or why it stopped.
RUNNING, ONE_LEFT, EQUIVALENT, MAX_SEEDS_REACHED = "running", "one left", "equivalent", "max seeds"

Trial = tuple[str, int]  # (variant, seed)


@dataclass(frozen=True)
class SeedScores:
    """One finished trial as the race sees it: its seed and its probabilities of spheres on the
    verdict's scenes (analysis.scenes: the last epoch's validation scores, or the held-out test
    scores), in the order of the labels passed to `decide`."""

    seed: int
    proba: np.ndarray  # (N,)


@dataclass(frozen=True)
class RaceDesign:
    """What the race is fixed to before it starts: the variants, the seed order (first_seed,
    first_seed + 1, ... up to max_seeds of them), the error rate, the equivalence margin (in
    the metric's units; None: no equivalence stop) and the metric it decides on (the space's
    primary; its direction is the registry's Metric.goal)."""

    variants: tuple[str, ...]
    max_seeds: int = MAX_SEEDS
    alpha: float = ALPHA
    margin: float | None = None
    metric: str = SELECT
    first_seed: int = DEFAULT_SEED
    n0: int = FIRST_SEEDS
    paired_seeds: bool = False  # seed i of every variant shares real upstream trials (CILP)

    def __post_init__(self) -> None:
        problem = _refusal(self)
        if problem:
            raise UserError(problem)

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seed order: look r uses the first n0 + r - 1 of them."""
        return tuple(range(self.first_seed, self.first_seed + self.max_seeds))

    @property
    def looks(self) -> int:
        """The most looks a race can take (the survivors reach max_seeds at the last)."""
        return self.max_seeds - self.n0 + 1

    @property
    def look_alpha(self) -> float:
        """Each look's level: alpha spent evenly over the most looks (Bonferroni)."""
        return self.alpha / self.looks

    @property
    def fixed_trials(self) -> int:
        """The trials of the fixed design the race saves on: max_seeds for every variant."""
        return len(self.variants) * self.max_seeds


def _refusal(d: RaceDesign) -> str:
    """Why a design cannot run, in one line ("" if it can)."""
    if len(d.variants) < 2:
        return f"--race compares variants: the space has {len(d.variants)}, it needs 2 or more"
    if len(set(d.variants)) != len(d.variants):
        return f"--race: variant names repeat: {', '.join(d.variants)}"
    if d.n0 < 2:
        return f"--race starts each variant with 2 or more seeds (a seed spread), not {d.n0}"
    if d.max_seeds < d.n0:
        return f"--max-seeds {d.max_seeds} is below the {d.n0} seeds each variant starts with"
    if not 0 < d.alpha < 1:
        return f"--alpha {d.alpha:g} is not in (0, 1)"
    if d.margin is not None and not (0 < d.margin < math.inf):
        return f"--margin {d.margin:g} is not a positive number (leave it out for no margin)"
    if d.metric not in SCENE_METRICS or TRIAL_METRICS[d.metric].goal not in ("min", "max"):
        ranked = ", ".join(m for m in SCENE_METRICS if TRIAL_METRICS[m].goal)
        return f"--race decides on per-scene scores of a ranked metric ({ranked}), not {d.metric}"
    return ""


@dataclass(frozen=True)
class Elimination:
    """A variant shown worse than another at a look: difference = it minus `lost_to` in the
    metric (worse by the metric's goal), the pair's Holm-adjusted p (over the survivors' pairs
    and those with the variants eliminated before), and the look's level it fell below."""

    variant: str
    lost_to: str
    difference: float
    p_holm: float
    level: float

    @property
    def reason(self) -> str:
        return (
            f"{self.variant}: worse than {self.lost_to} by {self.difference:+.3g} (Holm p = "
            f"{self.p_holm:.2g} < {self.level:.3g})"
        )


@dataclass(frozen=True)
class Look:
    """One look: the survivors it compared (best observed first) with `seeds` seeds each, the
    eliminations, who is left, whether every pair left is shown equivalent within the margin,
    the outcome after it, and the all-pairs comparison it rests on (its p_holm and worse are
    the race's: the eliminated variants' pairs counted)."""

    number: int
    seeds: int
    compared: tuple[str, ...]
    eliminated: tuple[Elimination, ...]
    survivors: tuple[str, ...]
    equivalent: bool
    outcome: str
    comparison: BestSet


@dataclass(frozen=True)
class RaceState:
    """Where a race stands: its looks so far, the survivors (best observed first), the outcome
    (RUNNING until it stops) and the trials the next look needs that have not finished."""

    design: RaceDesign
    looks: tuple[Look, ...]
    survivors: tuple[str, ...]
    outcome: str
    next_trials: tuple[Trial, ...]

    @property
    def confidence_set(self) -> tuple[str, ...]:
        """The survivors: they hold the truly best variant with probability at least
        1 - alpha, at any look (the error is spent over all of them)."""
        return self.survivors

    @property
    def winner(self) -> str | None:
        return self.survivors[0] if self.outcome == ONE_LEFT else None

    @property
    def seeds_used(self) -> dict[str, int]:
        """Per variant, the seeds its last look used (0 before the first look)."""
        used = dict.fromkeys(self.design.variants, 0)
        for look in self.looks:
            used.update(dict.fromkeys(look.compared, look.seeds))
        return used


def decide(
    design: RaceDesign, labels: np.ndarray, results: Mapping[str, Sequence[SeedScores]]
) -> RaceState:
    """The race's state after the finished trials `results` (variant -> its finished trials,
    any order, any seeds): every look whose trials have all finished is taken, in order."""
    scores = _by_seed(design, results)
    survivors, looks = design.variants, []
    while True:
        n = design.n0 + len(looks)
        needed = tuple((v, s) for v in survivors for s in design.seeds[:n] if s not in scores[v])
        if needed:
            return RaceState(design, tuple(looks), survivors, RUNNING, needed)
        look = _look(design, labels, len(looks) + 1, n, {v: scores[v] for v in survivors})
        looks.append(look)
        survivors = look.survivors
        if look.outcome != RUNNING:
            return RaceState(design, tuple(looks), survivors, look.outcome, ())


def _by_seed(
    design: RaceDesign, results: Mapping[str, Sequence[SeedScores]]
) -> dict[str, dict[int, np.ndarray]]:
    unknown = sorted(set(results) - set(design.variants))
    if unknown:
        raise ValueError(f"results of variants not in the race: {', '.join(unknown)}")
    out: dict[str, dict[int, np.ndarray]] = {v: {} for v in design.variants}
    for variant, finished in results.items():
        for r in finished:
            if r.seed in out[variant]:
                raise ValueError(f"{variant} seed {r.seed} is reported twice")
            out[variant][r.seed] = np.asarray(r.proba, np.float64)
    return out


def _look(
    design: RaceDesign,
    labels: np.ndarray,
    number: int,
    n: int,
    scores: Mapping[str, Mapping[int, np.ndarray]],
) -> Look:
    """Look `number`: the survivors' first `n` seeds, all pairs at the look's level (best_set
    counts bit-identical scores of two seeds once: the same run, not another seed)."""
    level = design.look_alpha
    seeds = design.seeds[:n]
    proba = {v: np.stack([by_seed[s] for s in seeds]) for v, by_seed in scores.items()}
    comparison = best_set(proba, labels, design.metric, design.paired_seeds, level)
    comparison = _with_eliminated(comparison, len(design.variants) - len(scores), design, level)
    eliminated = tuple(
        _elimination(comparison, v, level) for v in comparison.order if v in comparison.worse
    )
    left = tuple(v for v in comparison.order if v not in comparison.worse)
    equivalent = (
        design.margin is not None
        and len(left) > 1
        and all(
            comparison.pairs[(x, y)].equivalent_within(design.margin, 1 - level)
            for i, x in enumerate(left)
            for y in left[i + 1 :]
        )
    )
    if len(left) == 1:
        outcome = ONE_LEFT
    elif equivalent:
        outcome = EQUIVALENT
    else:
        outcome = MAX_SEEDS_REACHED if n == design.max_seeds else RUNNING
    return Look(number, n, tuple(comparison.order), eliminated, left, equivalent, outcome,
                comparison)  # fmt: skip


def _with_eliminated(comparison: BestSet, out: int, design: RaceDesign, level: float) -> BestSet:
    """The look's comparison with Holm over the survivors' pairs plus, never rejected, every
    pair of a survivor and one of the `out` variants eliminated before: so a truly best
    variant's pairs are counted as if no variant had gone, whichever did (module docstring)."""
    keys = list(comparison.pairs)
    survivors = len(comparison.order)
    p = [comparison.pairs[k].p_value for k in keys] + [1.0] * (survivors * out)
    p_holm = dict(zip(keys, holm(p)[: len(keys)], strict=True))
    sign = 1.0 if TRIAL_METRICS[design.metric].goal == "min" else -1.0
    worse: dict[str, str] = {}
    for (x, y), adjusted in p_holm.items():
        if adjusted < level:  # y - x > 0 on a metric to minimise: y is the worse
            loser, winner = (y, x) if sign * comparison.pairs[(x, y)].difference > 0 else (x, y)
            worse.setdefault(loser, winner)
    left = [v for v in comparison.order if v not in worse]
    return replace(comparison, p_holm=p_holm, worse=worse, confidence_set=left)


def _elimination(comparison: BestSet, loser: str, level: float) -> Elimination:
    winner = comparison.worse[loser]
    # pairs hold (x, y) -> y - x with x ranked before y
    key = (winner, loser) if (winner, loser) in comparison.pairs else (loser, winner)
    diff = comparison.pairs[key].difference
    return Elimination(loser, winner, diff if key[0] == winner else -diff,
                       comparison.p_holm[key], level)  # fmt: skip
