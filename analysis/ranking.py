"""More than two variants: a ranking by mean min-validation-loss, each variant against the best
one with Welch's t-test Holm-corrected across the comparisons, the probability of improvement,
and a verdict (the best, those statistically indistinguishable from it, the rest).

Plain data in, plain data out (no Ray, no files), so every number can be checked by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.stats import Comparison, VariantSummary, compare
from tune_cilp.core.metrics import SELECT, TRIAL_METRICS

ALPHA = 0.05
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """Mean and the half-width of its confidence interval (Student's t, n - 1 degrees of
    freedom; NaN for fewer than two values), and n."""

    mean: float
    half_width: float
    n: int


@dataclass(frozen=True)
class RankedVariant:
    """One row of the ranking. vs_best: this variant minus the best (None for the best itself);
    p_holm: Welch's p-value Holm-corrected across all comparisons with the best;
    p_improvement: P(best < this) over all pairs of their seeds (ties count half)."""

    variant: VariantSummary
    vs_best: Comparison | None
    p_holm: float
    p_improvement: float


@dataclass
class Ranking:
    """Variants sorted by mean of `metric` (best first), with the verdict's three groups."""

    rows: list[RankedVariant]
    metric: str
    testable: bool  # every variant has 2+ seeds
    indistinguishable: list[str]
    worse: list[str]

    @property
    def best(self) -> VariantSummary:
        return self.rows[0].variant

    def verdict(self) -> str:
        """One line: the best, those indistinguishable from it, the rest."""
        if not self.testable:
            return (
                f"ranking by mean {self.metric} only: some variants have a single seed; run "
                "with --seeds (e.g. --seeds 51,52,53) to test which differences are real"
            )
        same = ", ".join(self.indistinguishable) or "none"
        rest = ", ".join(self.worse) or "none"
        return (
            f"best {self.metric}: {self.best.name}; statistically indistinguishable from it "
            f"(Holm-corrected Welch p >= {ALPHA:g}): {same}; worse: {rest}"
        )


def half_width(std: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half-width of the t confidence interval of a mean from its sample std (ddof 1) and n;
    NaN for fewer than two values."""
    if n < 2 or math.isnan(std):
        return math.nan
    from scipy import stats as scipy_stats  # here: ~1.6 s to import, needed only with 2+ seeds

    return float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)


def interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean ± the t-based confidence half-width of the mean."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return Interval(math.nan, math.nan, 0)
    std = float(np.std(arr, ddof=1)) if arr.size > 1 else math.nan
    return Interval(float(arr.mean()), half_width(std, int(arr.size), confidence), int(arr.size))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of p-values (NaN stays NaN and is not counted).

    No declared dependency has it (scipy.stats.false_discovery_control is Benjamini-Hochberg):
    sort the m p-values, multiply the i-th smallest (from 0) by m - i, carry the running
    maximum, cap at 1.
    """
    valid = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(valid)):
        running = max(running, min(1.0, (len(valid) - rank) * p))
        adjusted[i] = running
    return adjusted


def probability_of_improvement(best: Sequence[float], other: Sequence[float]) -> float:
    """P(a seed of `best` scores lower than a seed of `other`) over all pairs, ties half:
    the Mann-Whitney U of `other` against `best` divided by the number of pairs."""
    if not len(best) or not len(other):
        return math.nan
    from scipy import stats as scipy_stats  # here: ~1.6 s to import, needed only with 2+ seeds

    u = scipy_stats.mannwhitneyu(other, best, alternative="two-sided").statistic
    return float(u) / (len(best) * len(other))


def rank_variants(variants: Sequence[VariantSummary], metric: str = SELECT) -> Ranking:
    """Sort by mean `metric` (lower is better) and compare every variant with the best."""
    ordered = sorted(variants, key=lambda v: (v.metrics[metric].mean, v.name))
    best = ordered[0]
    comparisons = [compare(best.values(metric), v.values(metric)) for v in ordered[1:]]
    adjusted = holm([c.p_value for c in comparisons])
    rows = [RankedVariant(best, None, math.nan, math.nan)]
    for v, c, p in zip(ordered[1:], comparisons, adjusted, strict=True):
        rows.append(
            RankedVariant(
                v, c, p, probability_of_improvement(best.values(metric), v.values(metric))
            )
        )
    testable = all(len(v.trials) >= 2 for v in ordered)
    same = [r.variant.name for r in rows[1:] if testable and not r.p_holm < ALPHA]
    worse = [r.variant.name for r in rows[1:] if testable and r.p_holm < ALPHA]
    return Ranking(rows, metric, testable, same, worse)


# The many-variant table's columns, in the shape of the seed series' four-way fusion table.
COLUMNS: tuple[str, ...] = (
    "val_loss",
    "val_accuracy",
    "val_balanced_accuracy",
    "val_f1",
    "params_m",
    "s_per_epoch",
    "training_time_s",
    "peak_memory_mb",
)
VS_BEST = ("Δ vs best", "p (Holm)", "P(best < it)")


def _interval_cell(values: Sequence[float], fmt: str) -> str:
    iv = interval([v for v in values if not math.isnan(v)])
    if iv.n == 0:
        return "n/a"
    if iv.n == 1:
        return f"{format(iv.mean, fmt)} (n=1)"
    return f"{format(iv.mean, fmt)} ± {format(iv.half_width, fmt)} (n={iv.n})"


def ranking_table(ranking: Ranking) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted rows: one row per variant, best first; cells mean ± 95 % CI."""
    headers = ["Rank", "Variant", *(TRIAL_METRICS[k].label for k in COLUMNS), *VS_BEST]
    fmt = TRIAL_METRICS[ranking.metric].fmt
    rows = []
    for place, r in enumerate(ranking.rows, start=1):
        cells = [_interval_cell(r.variant.values(k), TRIAL_METRICS[k].fmt) for k in COLUMNS]
        if r.vs_best is None:
            vs = ["(best)", "", ""]
        else:
            p = "n/a" if math.isnan(r.p_holm) else f"{r.p_holm:.2g}"
            vs = [format(r.vs_best.difference, "+" + fmt), p, f"{r.p_improvement:.2f}"]
        rows.append([str(place), r.variant.name, *cells, *vs])
    return headers, rows


def ranking_notes(ranking: Ranking) -> list[str]:
    """What the columns mean, then the verdict."""
    return [
        f"Sorted by mean {TRIAL_METRICS[ranking.metric].label} (minimum over epochs); cells: "
        "mean ± 95 % CI half-width across seeds (Student's t), n = seeds. Δ vs best: this "
        "variant's mean minus the best's; p (Holm): Welch's t-test against the best, "
        "Holm-corrected across the comparisons; P(best < it): share of seed pairs in which "
        "the best scores lower. Peak Memory: GPU memory allocated, or on CPU the trial "
        "process's peak resident set.",
        "Verdict: " + ranking.verdict(),
    ]
