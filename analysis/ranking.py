"""More than two variants: a ranking by the space's primary metric, each variant against the
best one, and a verdict that claims only what an all-pairs, Holm-corrected comparison allows:
a confidence set for the best (the variants no other is shown better than) and the variants
shown worse than another.

Choosing the best on the same scores that then test "other vs best" calls a tie a loss far too
often (a winner's curse); testing every pair and correcting for all of them holds the
family-wise error whichever variant is truly best. With per-scene scores the tests are
analysis.inference's (seeds with k - 1 df plus the shared scenes); without them Welch's t-test
across seeds. McNemar (one seed each) or Welch (two or more) stands beside it as a cross-check.
Printed as three tables, each at most 120 characters wide in the grid format.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

from analysis.bootstrap import holm
from analysis.cells import estimate_cell, fmt_value, name_cell, p_cell, paired_cell, spread_cell
from analysis.inference import Difference, Interval, improvement_probability
from analysis.one_class import UNDEFINED, OneClass, tagged
from analysis.scenes import SCENES_ONLY, SceneStats
from analysis.stats import Comparison, VariantSummary, compare
from tune_cilp.core.metrics import SELECT, TRIAL_METRICS

ALPHA = 0.05
# The comparison table's differences: the primary metric first, then the other of these (two
# fit the width); and the cost table's figures (spread across seeds). The quality table's
# metrics are the registry's: quality_metrics().
VS_BEST = ("val_loss", "val_roc_auc")
COST = ("params_m", "s_per_epoch", "training_time_s", "peak_memory_mb")
MCNEMAR, WELCH = "McNemar", "Welch"
HEADER_WIDTH = 12


def quality_metrics() -> tuple[str, ...]:
    """The quality table's metrics, each with its interval: the registry's metrics
    (tune_cilp.core.metrics.CLASSIFICATION) that have a ranking_column, in that column order."""
    shown = [m for m in TRIAL_METRICS.values() if m.ranking_column]
    return tuple(m.key for m in sorted(shown, key=lambda m: m.ranking_column))


def vs_best_metrics(primary: str) -> tuple[str, ...]:
    """The comparison table's metrics: the primary first, then VS_BEST's others (two)."""
    return (primary, *(m for m in VS_BEST if m != primary))[: len(VS_BEST)]


@dataclass(frozen=True)
class RankedVariant:
    """One row of the ranking (differences are this variant minus the best; empty / None / NaN
    for the best itself).

    paired: per compared metric, the difference on the verdict's scores; p_holm: its primary
    metric's p, Holm-corrected over every pair of variants; welch: Welch's test across seeds on
    the primary metric; mcnemar: (p, scenes only the best gets right, only this one), one seed
    each; p_second_holm: the McNemar or Welch p, Holm-corrected over the comparisons with the
    best; improvement: P(a seed of the best beats a seed of this one) with its interval;
    p_best: share of draws in which it ranks first.
    """

    variant: VariantSummary
    quality: dict[str, Interval]
    paired: dict[str, Difference] = field(default_factory=dict)
    p_holm: float = math.nan
    welch: Comparison | None = None
    mcnemar: tuple[float, int, int] | None = None
    p_second_holm: float = math.nan
    improvement: Interval | None = None
    p_best: float = math.nan


@dataclass
class Ranking:
    """Variants sorted by `metric` (best first), the tests used and the verdict's sets."""

    rows: list[RankedVariant]
    metric: str
    scenes: SceneStats | None
    second_test: str  # MCNEMAR, WELCH or "" (mixed seed counts)
    confidence_set: list[str]
    worse: dict[str, str]  # variant -> one variant shown better than it
    one_class: OneClass | None = None  # the scenes are all of one class (analysis/one_class.py)

    def mark(self, key: str) -> str:
        """The one-class tag of metric `key`'s column ("undefined", "cubes only"), else ""."""
        return self.one_class.mark(key) if self.one_class is not None else ""

    @property
    def best(self) -> VariantSummary:
        return self.rows[0].variant

    @property
    def testable(self) -> bool:
        return self.scenes is not None or self.second_test == WELCH

    @property
    def evidence(self) -> str:
        """The test the verdict rests on and the scores it used."""
        if self.scenes is not None:
            return (
                f"all pairs, Holm-corrected, over {self.scenes.coverage}, on "
                f"{self.scenes.verdict_scores}"
            )
        return "Welch's t-test across seeds, all pairs, Holm-corrected"

    def verdict(self) -> str:
        """One line: the best observed, the confidence set for the best, those shown worse."""
        label = self.metric
        if not self.testable:
            return (
                f"ranking by {label} only: no per-scene scores and some variants have a single "
                "seed; run with --seeds (e.g. --seeds 51,52,53) to test which differences are "
                "real"
            )
        ranked = ", ".join(self.confidence_set)
        worse = "; ".join(f"{n} (than {b})" for n, b in self.worse.items()) or "none"
        single = self.scenes is not None and self.scenes.coverage == SCENES_ONLY
        claim = (
            "; with one seed per variant this is about these trained models, not the "
            "architectures (run with --seeds 51,52,53)"
            if single
            else ""
        )
        return (
            f"lowest {label}: {self.best.name}"
            if TRIAL_METRICS[label].goal == "min"
            else f"highest {label}: {self.best.name}"  # fmt: skip
        ) + (
            f"; 95% confidence set for the best: {ranked}; shown worse than another variant "
            f"(p < {ALPHA:g}): {worse}; the rest are not shown to differ from the best, which "
            f"is not equivalence ({self.evidence}){claim}"
        )


def _header(label: str) -> str:
    """A column title wrapped at spaces to HEADER_WIDTH (the numbers below are narrower)."""
    return textwrap.fill(label, HEADER_WIDTH, break_on_hyphens=False, break_long_words=False)


def _marked(ranking: Ranking, label: str, key: str) -> str:
    """A metric's column title, with its one-class tag on a line of its own."""
    return tagged(_header(label), [ranking.mark(key)])


def quality_estimates(
    v: VariantSummary, scenes: SceneStats | None, one_class: OneClass | None = None
) -> dict[str, Interval]:
    """Per quality metric: the scene statistics' interval, else the mean across seeds (no
    interval: the seeds alone give none that respects a bounded metric); no number for one the
    scenes' single class leaves undefined (F1 of cubes only is 0 by convention)."""
    nan = math.nan
    undefined = Interval(nan, nan, nan, len(v.trials), "", "n/a: one class")
    out = {}
    for m in quality_metrics():
        if one_class is not None and one_class.mark(m) == UNDEFINED:
            out[m] = undefined
        elif scenes is not None:
            out[m] = scenes.variants[v.name].estimates[m]
        else:
            out[m] = Interval(v.metrics[m].mean, nan, nan, len(v.trials), "", "")
    return out


def rank_variants(
    variants: Sequence[VariantSummary],
    scenes: SceneStats | None = None,
    metric: str = SELECT,
    one_class: OneClass | None = None,
) -> Ranking:
    """Sort by `metric` and test every pair (module docstring); `one_class`: the scenes are all
    of one class, and the columns of the metrics that leaves undefined or one-sided say so (the
    caller ranks on none of them: OneClass.refusal)."""
    quality = {v.name: quality_estimates(v, scenes, one_class) for v in variants}
    by_name = {v.name: v for v in variants}
    goal = TRIAL_METRICS[metric].goal
    sign = 1.0 if goal == "min" else -1.0
    if scenes is not None:
        best_set = scenes.best(metric, ALPHA)
        order, p_best = best_set.order, best_set.p_best
        p_pair, worse = best_set.p_holm, best_set.worse
    else:
        order = sorted(by_name, key=lambda n: (sign * by_name[n].metrics[metric].mean, n))
        p_best = {}
        p_pair, worse = _welch_pairs(order, by_name, metric, sign)
    ordered = [by_name[n] for n in order]
    best, others = ordered[0], ordered[1:]
    welch = [compare(best.values(metric), v.values(metric)) for v in others]
    compared = vs_best_metrics(metric)
    paired = [
        {m: scenes.compare(best.name, v.name, m, verdict=True) for m in compared} if scenes
        else {} for v in others
    ]  # fmt: skip
    mcnemar = [scenes.mcnemar(best.name, v.name) if scenes else None for v in others]
    if scenes is not None and all(len(v.trials) == 1 for v in ordered):
        second, p_second = MCNEMAR, holm([m[0] if m else math.nan for m in mcnemar])
    elif all(len(v.trials) >= 2 for v in ordered):
        second, p_second = WELCH, holm([c.p_value for c in welch])
    else:
        second, p_second = "", [math.nan] * len(others)
    rows = [RankedVariant(best, quality[best.name], p_best=p_best.get(best.name, math.nan))]
    for i, v in enumerate(others):
        rows.append(
            RankedVariant(
                v,
                quality[v.name],
                paired[i],
                p_pair.get((best.name, v.name), math.nan),
                welch[i],
                mcnemar[i],
                p_second[i],
                improvement_probability(best.values(metric), v.values(metric), goal),
                p_best.get(v.name, math.nan),
            )
        )
    ranking = Ranking(rows, metric, scenes, second, [], {}, one_class)
    if ranking.testable:
        ranking.worse = {n: worse[n] for n in order if n in worse}
        ranking.confidence_set = [n for n in order if n not in worse]
    return ranking


def _welch_pairs(
    order: list[str], by_name: dict[str, VariantSummary], metric: str, sign: float
) -> tuple[dict[tuple[str, str], float], dict[str, str]]:
    """Without per-scene scores: Welch across seeds for every pair, Holm over all of them."""
    keys = [(x, y) for i, x in enumerate(order) for y in order[i + 1 :]]
    tests = [compare(by_name[x].values(metric), by_name[y].values(metric)) for x, y in keys]
    adjusted = holm([c.p_value for c in tests])
    worse: dict[str, str] = {}
    for (x, y), c, p in zip(keys, tests, adjusted, strict=True):
        if p < ALPHA:
            loser, winner = (y, x) if sign * c.difference > 0 else (x, y)
            worse.setdefault(loser, winner)
    return dict(zip(keys, adjusted, strict=True)), worse


def quality_table(ranking: Ranking) -> tuple[list[str], list[list[str]]]:
    """Rank, variant and each quality metric with its interval."""
    shown = quality_metrics()
    headers = ["Rank", "Variant", *(_marked(ranking, TRIAL_METRICS[k].label, k) for k in shown)]
    rows = [
        [str(i), name_cell(r.variant.name)]
        + [
            estimate_cell(r.quality[k], TRIAL_METRICS[k].fmt, TRIAL_METRICS[k].bounds)
            for k in shown
        ]  # fmt: skip
        for i, r in enumerate(ranking.rows, start=1)
    ]
    return headers, rows


def vs_best_table(ranking: Ranking) -> tuple[list[str], list[list[str]]]:
    """Each variant against the best: differences, the all-pairs Holm p, the cross-check's
    Holm p, P(first) and, with seeds, the probability of improvement."""
    compared = vs_best_metrics(ranking.metric)
    second = f"p {ranking.second_test}\n(Holm)" if ranking.second_test else ""
    headers = [
        "Variant",
        *(_marked(ranking, f"Δ {TRIAL_METRICS[k].label}", k) for k in compared),
        "p all pairs\n(Holm)",
        *([second] if second else []),
        "P(first)",
        "P(best\nbeats it)",
    ]
    rows = []
    for i, r in enumerate(ranking.rows, start=1):
        first = "n/a" if math.isnan(r.p_best) else f"{r.p_best:.2f}"
        if i == 1:
            blanks = [""] * (len(headers) - 4)
            rows.append([name_cell(r.variant.name), "(best)", *blanks, first, ""])
            continue
        fmt = {k: TRIAL_METRICS[k].fmt for k in compared}
        if r.paired:
            deltas = [paired_cell(r.paired[k], fmt[k]) for k in compared]
        else:  # no scene statistics: the difference of the seeds' means
            deltas = [
                fmt_value(r.quality[k].value - ranking.rows[0].quality[k].value, "+" + fmt[k])
                if k in r.quality else "" for k in compared
            ]  # fmt: skip
        ps = [p_cell(r.p_holm), *([p_cell(r.p_second_holm)] if second else [])]
        rows.append([name_cell(r.variant.name), *deltas, *ps, first, _improvement(r)])
    return headers, rows


def _improvement(r: RankedVariant) -> str:
    e = r.improvement
    if e is None or math.isnan(e.value):
        return "n/a"
    return f"{e.value:.2f}\n[{e.low:.2f}, {e.high:.2f}]"


def cost_table(ranking: Ranking) -> tuple[list[str], list[list[str]]]:
    """Rank, variant and each COST figure across its seeds."""
    headers = ["Rank", "Variant", *(_header(TRIAL_METRICS[k].label) for k in COST)]
    rows = [
        [str(i), name_cell(r.variant.name)]
        + [spread_cell(r.variant.values(k), TRIAL_METRICS[k].fmt) for k in COST]
        for i, r in enumerate(ranking.rows, start=1)
    ]
    return headers, rows


def ranking_tables(ranking: Ranking) -> list[tuple[str, list[str], list[list[str]]]]:
    """The three tables, each with its title line."""
    where = "validation" if ranking.scenes is None else ranking.scenes.split
    compared = "" if ranking.scenes is None else f" (on {ranking.scenes.verdict_scores})"
    return [
        (f"Quality ({where}), in the verdict's order", *quality_table(ranking)),
        (f"Against the best{compared}", *vs_best_table(ranking)),
        ("Cost", *cost_table(ranking)),
    ]


def ranking_notes(ranking: Ranking) -> list[str]:
    """What the columns mean, how the intervals were made, then the verdict."""
    seeds = "mean over seeds; " if any(len(r.variant.trials) > 1 for r in ranking.rows) else ""
    intervals = (
        ranking.scenes.note()
        if ranking.scenes is not None
        else "No intervals on quality: without per-scene scores only the seeds' means are shown."
    )
    second = {
        MCNEMAR: "p McNemar: exact test on which scenes each gets right at 0.5 (a cross-check); ",
        WELCH: "p Welch: Welch's t-test across seeds, ignoring the scenes (a cross-check); ",
        "": "",
    }[ranking.second_test]
    label = TRIAL_METRICS[ranking.metric].label
    order = "" if ranking.scenes is None else f" on {ranking.scenes.verdict_scores}"
    return [
        f"Ranked by {label}{order} (the space's primary metric; {seeds}ROC AUC, AP and Balanced "
        "Accuracy with spheres positive; the quality cells' Validation Loss is the minimum over "
        "epochs, as the seed notebook reported it, so the ranks may differ from its order). Δ: "
        f"this variant minus the best; p all pairs: {label} compared for every pair of variants, "
        "Holm-corrected over all pairs (the "
        f"best is chosen on the same data, so only this holds the error rate); {second}"
        "P(first): share of draws from the estimates' joint uncertainty in which it ranks first "
        "(a summary, not a test); P(best beats it): share of seed pairs in which the best's seed "
        "scores better, with Newcombe's interval (2+ seeds each). Quality rows other than "
        f"{label} are exploratory. Cost: mean (min–max) across seeds; Peak Memory: GPU memory "
        "allocated, or on CPU the trial process's peak resident set.",
        intervals,
        "Verdict: " + ranking.verdict(),
    ]
