"""More than two variants: a ranking by validation loss, each variant against the best one, and a
verdict (the best, those statistically indistinguishable from it, the rest).

With per-scene scores (analysis.scenes) every comparison is paired on the same resampled
validation scenes (and seeds) and the decision rests on the paired bootstrap of the loss
difference, Holm-corrected across the comparisons; McNemar's exact test (one seed each) or Welch's
t-test across seeds (two or more each) is shown beside it, Holm-corrected too. Without them it
falls back to Welch's test across seeds. Printed as three tables, each at most 120 characters
wide in the grid format: quality, comparison with the best, cost.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

from analysis.bootstrap import Estimate, Paired, holm
from analysis.cells import estimate_cell, name_cell, p_cell, paired_cell, spread_cell
from analysis.scenes import SceneStats
from analysis.stats import Comparison, VariantSummary, compare
from tune_cilp.core.metrics import SELECT, TRIAL_METRICS

ALPHA = 0.05
CONFIDENCE = 0.95
# The quality table's metrics (each with its interval), the comparison table's paired
# differences, and the cost table's figures (spread across seeds).
QUALITY = ("val_loss", "val_roc_auc", "val_average_precision", "val_balanced_accuracy", "val_f1")
VS_BEST = ("val_loss", "val_roc_auc", "val_balanced_accuracy")
COST = ("params_m", "s_per_epoch", "training_time_s", "peak_memory_mb")
MCNEMAR, WELCH = "McNemar", "Welch"
HEADER_WIDTH = 12


@dataclass(frozen=True)
class RankedVariant:
    """One row of the ranking (differences are this variant minus the best; empty / None / NaN
    for the best itself).

    paired: per VS_BEST metric, the paired bootstrap difference (with scene statistics);
    p_boot_holm: its val_loss p, Holm-corrected; welch: Welch's test across seeds on val_loss;
    mcnemar: (p, scenes only the best gets right, only this one) with one seed each;
    p_second_holm: the McNemar or Welch p (Ranking.second_test), Holm-corrected;
    p_improvement: P(best < this) over pairs of their seeds (two or more each), ties half.
    """

    variant: VariantSummary
    quality: dict[str, Estimate]
    paired: dict[str, Paired] = field(default_factory=dict)
    p_boot_holm: float = math.nan
    welch: Comparison | None = None
    mcnemar: tuple[float, int, int] | None = None
    p_second_holm: float = math.nan
    p_improvement: float = math.nan


@dataclass
class Ranking:
    """Variants sorted by `metric` (best first), the tests used and the verdict's groups."""

    rows: list[RankedVariant]
    metric: str
    scenes: SceneStats | None
    second_test: str  # MCNEMAR, WELCH or "" (mixed seed counts without scene statistics)
    indistinguishable: list[str]
    worse: list[str]

    @property
    def best(self) -> VariantSummary:
        return self.rows[0].variant

    @property
    def testable(self) -> bool:
        return self.scenes is not None or self.second_test == WELCH

    @property
    def evidence(self) -> str:
        """The test the verdict rests on."""
        if self.scenes is not None:
            return f"paired bootstrap over {self.scenes.coverage}, Holm-corrected"
        return "Welch's t-test across seeds, Holm-corrected"

    def verdict(self) -> str:
        """One line: the best, those indistinguishable from it, the rest, and on what evidence."""
        if not self.testable:
            return (
                f"ranking by {self.metric} only: no per-scene scores and some variants have a "
                "single seed; run with --seeds (e.g. --seeds 51,52,53) to test which "
                "differences are real"
            )
        same = ", ".join(self.indistinguishable) or "none"
        rest = ", ".join(self.worse) or "none"
        return (
            f"best {self.metric}: {self.best.name}; statistically indistinguishable from it "
            f"(p >= {ALPHA:g}, {self.evidence}): {same}; worse: {rest}"
        )


def half_width(std: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half-width of the t confidence interval of a mean from its sample std (ddof 1) and n;
    NaN for fewer than two values."""
    if n < 2 or math.isnan(std):
        return math.nan
    from scipy import stats as scipy_stats  # here: ~1.6 s to import, needed only with 2+ seeds

    return float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)


def probability_of_improvement(best: Sequence[float], other: Sequence[float]) -> float:
    """P(a seed of `best` scores lower than a seed of `other`) over all pairs, ties half: the
    Mann-Whitney U of `other` against `best` over the number of pairs; NaN unless both have two
    or more seeds (with one each it is 0 or 1, which says nothing)."""
    if len(best) < 2 or len(other) < 2:
        return math.nan
    from scipy import stats as scipy_stats  # here: ~1.6 s to import, needed only with 2+ seeds

    u = scipy_stats.mannwhitneyu(other, best, alternative="two-sided").statistic
    return float(u) / (len(best) * len(other))


def quality_estimates(v: VariantSummary, scenes: SceneStats | None) -> dict[str, Estimate]:
    """Per QUALITY metric: the scene statistics' estimate, else the mean across seeds (no
    interval: the seeds alone give none that respects a bounded metric)."""
    if scenes is not None:
        return {m: scenes.variants[v.name].estimates[m] for m in QUALITY}
    return {m: Estimate(v.metrics[m].mean) for m in QUALITY}


def rank_variants(
    variants: Sequence[VariantSummary], scenes: SceneStats | None = None, metric: str = SELECT
) -> Ranking:
    """Sort by `metric` (lower is better) and compare every variant with the best."""
    quality = {v.name: quality_estimates(v, scenes) for v in variants}
    ordered = sorted(variants, key=lambda v: (quality[v.name][metric].value, v.name))
    best, others = ordered[0], ordered[1:]
    welch = [compare(best.values(metric), v.values(metric)) for v in others]
    paired = [
        {m: scenes.compare(best.name, v.name, m) for m in VS_BEST} if scenes else {} for v in others
    ]
    p_boot = holm([p[metric].p_value if p else math.nan for p in paired])
    mcnemar = [scenes.mcnemar(best.name, v.name) if scenes else None for v in others]
    single = all(len(v.trials) == 1 for v in ordered)
    if scenes is not None and single:
        second, p_second = MCNEMAR, holm([m[0] if m else math.nan for m in mcnemar])
    elif all(len(v.trials) >= 2 for v in ordered):
        second, p_second = WELCH, holm([c.p_value for c in welch])
    else:
        second, p_second = "", [math.nan] * len(others)
    rows = [RankedVariant(best, quality[best.name])]
    for i, v in enumerate(others):
        rows.append(
            RankedVariant(
                v,
                quality[v.name],
                paired[i],
                p_boot[i],
                welch[i],
                mcnemar[i],
                p_second[i],
                probability_of_improvement(best.values(metric), v.values(metric)),
            )
        )
    ranking = Ranking(rows, metric, scenes, second, [], [])
    if ranking.testable:
        decisive = p_boot if scenes is not None else p_second
        for r, p in zip(rows[1:], decisive, strict=True):
            (ranking.worse if p < ALPHA else ranking.indistinguishable).append(r.variant.name)
    return ranking


def _header(label: str) -> str:
    """A column title wrapped at spaces to HEADER_WIDTH (the numbers below are narrower)."""
    return textwrap.fill(label, HEADER_WIDTH, break_on_hyphens=False, break_long_words=False)


def quality_table(ranking: Ranking) -> tuple[list[str], list[list[str]]]:
    """Rank, variant and each QUALITY metric with its interval."""
    headers = ["Rank", "Variant", *(_header(TRIAL_METRICS[k].label) for k in QUALITY)]
    rows = [
        [str(i), name_cell(r.variant.name)]
        + [estimate_cell(r.quality[k], TRIAL_METRICS[k].fmt) for k in QUALITY]
        for i, r in enumerate(ranking.rows, start=1)
    ]
    return headers, rows


def vs_best_table(ranking: Ranking) -> tuple[list[str], list[list[str]]]:
    """Each variant against the best: paired differences, the tests' Holm-corrected p-values
    and, with seeds, the probability of improvement."""
    second = f"p {ranking.second_test}\n(Holm)" if ranking.second_test else ""
    headers = [
        "Variant",
        *(_header(f"Δ {TRIAL_METRICS[k].label}") for k in VS_BEST),
        "p boot\n(Holm)",
        *([second] if second else []),
        "P(best\n< it)",
    ]
    rows = []
    for i, r in enumerate(ranking.rows, start=1):
        if i == 1:
            rows.append([name_cell(r.variant.name), "(best)", *[""] * (len(headers) - 2)])
            continue
        fmt = {k: TRIAL_METRICS[k].fmt for k in VS_BEST}
        if r.paired:
            deltas = [paired_cell(r.paired[k], fmt[k]) for k in VS_BEST]
        else:  # no scene statistics: the difference of the seeds' means
            deltas = [
                format(r.quality[k].value - ranking.rows[0].quality[k].value, "+" + fmt[k])
                for k in VS_BEST
            ]
        ps = [p_cell(r.p_boot_holm), *([p_cell(r.p_second_holm)] if second else [])]
        improvement = "n/a" if math.isnan(r.p_improvement) else f"{r.p_improvement:.2f}"
        rows.append([name_cell(r.variant.name), *deltas, *ps, improvement])
    return headers, rows


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
    return [
        ("Quality, best first (validation, at each trial's best epoch)", *quality_table(ranking)),
        ("Against the best (paired on the same scenes)", *vs_best_table(ranking)),
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
        MCNEMAR: "p McNemar: exact test on which scenes each gets right at 0.5; ",
        WELCH: "p Welch: Welch's t-test across seeds on the validation loss; ",
        "": "",
    }[ranking.second_test]
    return [
        f"Sorted by {TRIAL_METRICS[ranking.metric].label} (minimum over epochs; {seeds}ROC AUC, "
        "AP, Balanced Accuracy and F1 with spheres positive, at that epoch). Δ: this variant "
        "minus the best; p boot: paired bootstrap of the loss difference; "
        f"{second}both Holm-corrected across the comparisons. P(best < it): share of seed pairs "
        "in which the best scores lower (2+ seeds each). Cost: mean (min–max) across seeds; "
        "Peak Memory: GPU memory allocated, or on CPU the trial process's peak resident set.",
        intervals,
        "Verdict: " + ranking.verdict(),
    ]
