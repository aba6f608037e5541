"""What the per-scene scores say: a bounded interval for one variant, a test of the difference
between two, and the honest choice of the best among many. The public API for notebooks:

    from analysis import compare_scores, metric_interval
    metric_interval(scores, labels, "val_roc_auc")       # scores: (seeds, scenes)
    compare_scores(a, b, labels, "val_loss")             # b - a, seeds may differ per side

Scores are predicted probabilities of spheres, rows = seeds (trained models), columns = the same
validation scenes; labels are 0/1 (spheres = 1). docs/STATISTICS.md says what each interval
covers and `benchmarks/bench_calibration.py` measures error rates and coverage by simulation.

- One seed: intervals over scenes only (these trained models), each metric by a method that
  stays inside [0, 1] and never collapses at a bound (Clopper-Pearson, Wilson, Newcombe's score
  interval for ROC AUC).
- Several seeds: training randomness enters through the per-seed values with k - 1 degrees of
  freedom; the scene sampling the seeds share enters through the stratified jackknife's
  covariance between seeds; the two add (Satterthwaite degrees of freedom). Variants are not
  paired by seed number unless `paired_seeds` says their seeds share something real (CILP
  chains).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from analysis import bootstrap
from tune_cilp.core.metrics import SCENE_METRICS, TRIAL_METRICS

CONFIDENCE = 0.95
SCENES_ONLY = "validation scenes only (these trained models)"
SEEDS_AND_SCENES = "training seeds and validation scenes"


@dataclass(frozen=True)
class Interval:
    """A metric's value (mean over seeds) and its interval; `covers` says what it covers."""

    value: float
    low: float
    high: float
    seeds: int
    covers: str
    method: str

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


@dataclass(frozen=True)
class Difference:
    """b - a: its interval, the two-sided p-value of "no difference", and how they were made.

    se: standard error; df: degrees of freedom of the t reference (inf: normal)."""

    difference: float
    low: float
    high: float
    p_value: float
    se: float
    df: float
    seeds: tuple[int, int]
    covers: str
    method: str

    def equivalent_within(self, margin: float, confidence: float = CONFIDENCE) -> bool:
        """Two one-sided tests (TOST), each at level 1 - confidence: the difference is shown to
        lie within +-margin (the 2 * confidence - 1 interval inside it)."""
        if not math.isfinite(self.se) or margin <= 0:
            return False
        q = _t_quantile(confidence, self.df)  # one-sided level alpha per side
        return bool(abs(self.difference) + q * self.se < margin)


def _t_quantile(level: float, df: float) -> float:
    from scipy import stats

    return float(stats.norm.ppf(level) if not math.isfinite(df) else stats.t.ppf(level, df))


def _p_two_sided(t: float, df: float) -> float:
    from scipy import stats

    dist = stats.norm if not math.isfinite(df) else stats.t(df)
    return float(min(1.0, 2 * dist.sf(abs(t))))


def _check(scores: np.ndarray, labels: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    if metric not in SCENE_METRICS:
        raise ValueError(f"unknown metric {metric!r}: choose from {', '.join(SCENE_METRICS)}")
    scores = np.atleast_2d(np.asarray(scores, np.float64))
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.shape[1] != labels.shape[0] or labels.ndim != 1:
        raise ValueError(f"scores must be (seeds, {labels.shape[0]}), got {scores.shape}")
    if not np.all((scores >= 0) & (scores <= 1)):
        raise ValueError("scores must be probabilities in [0, 1]")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0/1")
    # Identical rows are the same run repeated, not another seed: count it once.
    _, first = np.unique(scores, axis=0, return_index=True)
    return scores[np.sort(first)], labels.astype(np.int64)


def point_values(scores: np.ndarray, labels: np.ndarray, metric: str) -> np.ndarray:
    """The metric of every seed's scores on all scenes: (seeds,)."""
    ones = np.ones((1, labels.shape[0]))
    return np.array([bootstrap.scene_metrics(s, labels, ones, (metric,))[metric][0]
                     for s in scores])  # fmt: skip


def _bounds(metric: str) -> tuple[float, float]:
    return TRIAL_METRICS[metric].bounds


# --- one trained model: bounded intervals over scenes ----------------------------------------


def _proportion(count: float, n: float, confidence: float, method: str) -> tuple[float, float]:
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(count, n, alpha=1 - confidence, method=method)
    return float(low), float(high)


def _mean_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """t interval of a mean of per-scene values (i.i.d. scenes)."""
    n = values.size
    se = float(np.std(values, ddof=1)) / math.sqrt(n)
    q = _t_quantile(0.5 + confidence / 2, n - 1)
    mean = float(values.mean())
    return mean - q * se, mean + q * se


def auc_interval(auc: float, n_pos: int, n_neg: int, confidence: float) -> tuple[float, float]:
    """Newcombe's (2006) score interval for the Mann-Whitney AUC (his method 5): the AUC values
    theta with (auc - theta)^2 <= z^2 V(theta), V the Hanley-McNeil variance with both sample
    sizes replaced by their mean. Inside [0, 1], and wider than a point at an observed 1."""
    from scipy.optimize import brentq

    z2 = _t_quantile(0.5 + confidence / 2, math.inf) ** 2
    n_star = (n_pos + n_neg) / 2

    def excess(theta: float) -> float:
        v = theta * (1 - theta) / (n_pos * n_neg)
        v *= 1 + (n_star - 1) * ((1 - theta) / (2 - theta) + theta / (1 + theta))
        return (auc - theta) ** 2 - z2 * v

    # At an observed 0 or 1 the variance vanishes there too: search just inside it.
    inner = min(max(auc, 1e-12), 1 - 1e-12)
    low = 0.0 if excess(0.0) <= 0 else brentq(excess, 0.0, inner)
    high = 1.0 if excess(1.0) <= 0 else brentq(excess, inner, 1.0)
    return float(low), float(high)


SceneInterval = tuple[float, float, str]  # (low, high, method) of one model's interval


def _scene_interval(
    proba: np.ndarray, labels: np.ndarray, metric: str, confidence: float
) -> SceneInterval:
    """(low, high, method) of one model's metric over validation scenes: its own method where
    SCENE_INTERVALS has one, else t over scenes for a mean over scenes (the metric's term), else
    the stratified percentile bootstrap."""
    own = SCENE_INTERVALS.get(metric)
    if own is not None:
        return own(proba, labels, confidence)
    m = TRIAL_METRICS[metric]
    if m.term is None:
        return _bootstrap_interval(proba, labels, metric, confidence)
    low, high = _mean_interval(m.term(proba, labels == 1), confidence)
    lo, hi = m.bounds
    return max(low, lo), min(high, hi), "t over scenes"


def _accuracy_interval(proba, labels, confidence: float) -> SceneInterval:
    hits = int(np.sum((proba >= 0.5) == (labels == 1)))
    return (*_proportion(hits, len(labels), confidence, "beta"), "Clopper-Pearson")


def _balanced_interval(proba, labels, confidence: float) -> SceneInterval:
    """MOVER (Zou & Donner 2008) for the mean of the two class recalls from their Wilson
    intervals: inside [0, 1] and never a point."""
    predicted, pos = proba >= 0.5, labels == 1
    parts = []
    for cls in (pos, ~pos):
        n = int(cls.sum())
        if n == 0:
            continue
        hits = int(np.sum(predicted[cls] == pos[cls]))
        parts.append((hits / n, *_proportion(hits, n, confidence, "wilson")))
    k = len(parts)
    value = sum(p[0] for p in parts) / k
    low = value - math.sqrt(sum((p[0] - p[1]) ** 2 for p in parts)) / k
    high = value + math.sqrt(sum((p[2] - p[0]) ** 2 for p in parts)) / k
    return max(low, 0.0), min(high, 1.0), "MOVER-Wilson of the recalls"


def _f1_interval(proba, labels, confidence: float) -> SceneInterval:
    """F1 = 2J / (1 + J) with J = TP / (TP + FP + FN) (Jaccard): a Wilson interval of J mapped
    through that increasing function. No positives predicted or present: F1 is 0, no interval."""
    predicted, pos = proba >= 0.5, labels == 1
    tp = int(np.sum(predicted & pos))
    union = tp + int(np.sum(predicted & ~pos)) + int(np.sum(~predicted & pos))
    method = "Wilson on TP / (TP + FP + FN)"
    if union == 0:
        return math.nan, math.nan, method
    low, high = _proportion(tp, union, confidence, "wilson")
    return 2 * low / (1 + low), 2 * high / (1 + high), method


def _roc_auc_interval(proba, labels, confidence: float) -> SceneInterval:
    n_pos = int(np.sum(labels == 1))
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan, math.nan, "n/a: one class"
    auc = point_values(proba[None], labels, "val_roc_auc")[0]
    return (*auc_interval(auc, n_pos, n_neg, confidence), "Newcombe score")


def _percentile(proba, labels, metric: str, confidence: float) -> tuple[float, float, np.ndarray]:
    """Percentile interval of the stratified scene bootstrap, and its replicates."""
    counts = bootstrap.stratified_counts(labels)
    reps = bootstrap.scene_metrics(proba, labels, counts, (metric,))[metric]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(reps, [tail, 100 - tail])
    return float(low), float(high), reps


def _bootstrap_interval(proba, labels, metric: str, confidence: float) -> SceneInterval:
    """The stratified percentile bootstrap; no interval where the replicates do not spread (or a
    resample leaves the metric undefined)."""
    low, high, _ = _percentile(proba, labels, metric, confidence)
    if not high - low >= bootstrap.CONSTANT:
        return math.nan, math.nan, "stratified percentile bootstrap: no spread"
    return low, high, "stratified percentile bootstrap"


def _ap_interval(proba, labels, confidence: float) -> SceneInterval:
    """The stratified percentile bootstrap; where the replicates do not spread (AP = 1 on every
    resample), a Wilson interval of AP x positives out of positives, so a perfect ranking of 15
    spheres reads [0.80, 1], not a bare 1."""
    method = "stratified percentile bootstrap"
    low, high, reps = _percentile(proba, labels, "val_average_precision", confidence)
    if high - low < bootstrap.CONSTANT:
        n_pos = int(np.sum(labels == 1))
        value = float(reps[0])
        return (*_proportion(value * n_pos, n_pos, confidence, "wilson"), method)
    return low, high, method


def _brier_interval(proba, labels, confidence: float) -> SceneInterval:
    """t over scenes, widened to Wilson: a mean of errors in [0, 1] has variance at most
    mu (1 - mu), and Wilson's interval with that bound holds where the scenes' own spread says
    nothing (all errors near 0: 179 scenes cannot rule out a Brier of 0.02), so the interval is
    the union of both."""
    per_scene = TRIAL_METRICS["val_brier"].term(proba, labels == 1)
    low, high = _mean_interval(per_scene, confidence)
    w_low, w_high = _proportion(per_scene.sum(), len(per_scene), confidence, "wilson")
    low, high = min(low, w_low), max(high, w_high)
    return max(low, 0.0), min(high, 1.0), "t over scenes, widened to Wilson"


# The metrics whose one-model interval has a method of its own (each fits its metric's formula
# only); any other metric: t over scenes or the bootstrap (_scene_interval).
SCENE_INTERVALS: dict[str, Callable[[np.ndarray, np.ndarray, float], SceneInterval]] = {
    "val_accuracy": _accuracy_interval,
    "val_balanced_accuracy": _balanced_interval,
    "val_f1": _f1_interval,
    "val_roc_auc": _roc_auc_interval,
    "val_average_precision": _ap_interval,
    "val_brier": _brier_interval,
}


# --- one variant, any number of seeds ---------------------------------------------------------


def metric_interval(
    scores: np.ndarray, labels: np.ndarray, metric: str, confidence: float = CONFIDENCE
) -> Interval:
    """One variant's `metric` (mean over its seeds) with an interval inside the metric's range.

    One seed: over validation scenes only. k >= 2 seeds: the seeds' spread (t, k - 1 df) and
    the mean per-seed scene interval combined by MOVER (square root of the summed squared
    half-widths, each side on its own), which covers training randomness and scene sampling
    (conservatively: a seed's own scene noise is in both parts)."""
    scores, labels = _check(scores, labels, metric)
    values = point_values(scores, labels, metric)
    value = float(values.mean())
    if not math.isfinite(value):
        return Interval(value, math.nan, math.nan, len(values), "", "n/a")
    parts = [_scene_interval(s, labels, metric, confidence) for s in scores]
    k = len(values)
    if k == 1:
        low, high, method = parts[0]
        return Interval(value, low, high, 1, SCENES_ONLY, method)
    below = float(np.mean([v - p[0] for v, p in zip(values, parts, strict=True)]))
    above = float(np.mean([p[1] - v for v, p in zip(values, parts, strict=True)]))
    seed = _t_quantile(0.5 + confidence / 2, k - 1) * float(np.std(values, ddof=1)) / math.sqrt(k)
    lo, hi = _bounds(metric)
    low = max(value - math.hypot(seed, below), lo)
    high = min(value + math.hypot(seed, above), hi)
    method = f"seeds (t, {k - 1} df) + scenes ({parts[0][2]}), MOVER"
    return Interval(value, low, high, k, SEEDS_AND_SCENES, method)


# --- two variants -----------------------------------------------------------------------------


def jackknife_counts(labels: np.ndarray) -> np.ndarray:
    """(N, N) scene multiplicities: row s leaves scene s out (delete-one jackknife)."""
    n = len(labels)
    return np.ones((n, n)) - np.eye(n)


@dataclass
class Influence:
    """A variant's metric per seed on all scenes and its stratified jackknife deviations
    (seeds, N): g[i, s] = sqrt((n_c - 1) / n_c) * (theta_i without scene s - their mean over the
    class c of s), so that sum_s g[i, s] g[j, s] is the jackknife covariance of seeds i and j
    over scene sampling. Deterministic: no Monte Carlo error."""

    values: np.ndarray  # (seeds,)
    g: np.ndarray  # (seeds, N)
    scene_df: float  # df of its scene variance (see scene_df)
    span: float = math.inf  # the metric's range: a difference's interval stays within +-span

    @classmethod
    def of(cls, scores: np.ndarray, labels: np.ndarray, metric: str) -> Influence:
        counts = jackknife_counts(labels)
        values = point_values(scores, labels, metric)
        g = np.empty(scores.shape)
        for i, s in enumerate(scores):
            loo = bootstrap.scene_metrics(s, labels, counts, (metric,))[metric]
            for label in (0, 1):
                members = labels == label
                n_c = int(members.sum())
                if n_c > 1:
                    dev = loo[members] - loo[members].mean()
                    g[i, members] = math.sqrt((n_c - 1) / n_c) * dev
                else:
                    g[i, members] = 0.0
        low, high = _bounds(metric)
        return cls(values, g, scene_df(metric, labels), high - low)


def _cross(x: np.ndarray, y: np.ndarray, same: bool) -> np.ndarray:
    """Per scene, the mean product of rows of x and rows of y (distinct pairs when x is y):
    summed over scenes, the mean jackknife covariance between their seeds."""
    if same:
        k = x.shape[0]
        total = x.sum(axis=0)
        return (total * total - (x * x).sum(axis=0)) / (k * (k - 1))
    return x.mean(axis=0) * y.mean(axis=0)


# The metrics whose differences take a normal reference (scene_df); every other metric, one
# added to the registry included, takes the conservative t.
RANK_METRICS = ("val_roc_auc", "val_average_precision")


def scene_df(metric: str, labels: np.ndarray) -> float:
    """Degrees of freedom of a metric's scene variance. A mean over scenes (loss, Brier, the
    accuracies) has its variance carried by the rarer class, so t with (its count - 1) df: with
    a normal reference a heavy-tailed loss over 15 spheres rejects a true null 7 % of the time
    (measured, benchmarks/bench_calibration.py). The rank metrics' jackknife variance is
    DeLong's, whose t ratio near an AUC of 1 is compressed rather than heavy-tailed (a large
    difference comes with many discordant pairs), so they keep the normal reference. With one
    class only (analysis/one_class.py), its count - 1."""
    if metric in RANK_METRICS:
        return math.inf
    # The rarer class present: on scenes of one class only, that class carries the variance.
    present = [n for n in (int(np.sum(labels == 1)), int(np.sum(labels == 0))) if n > 0]
    return float(max(min(present, default=2) - 1, 1))


def difference_of(
    a: Influence,
    b: Influence,
    paired_seeds: bool = False,
    confidence: float = CONFIDENCE,
    seed_floor: tuple[float, int] | None = None,
) -> Difference:
    """b - a from their per-seed values and jackknife deviations (see compare_scores).
    seed_floor: (variance, df) pooled over more variants; a side whose own seed variance is
    below it takes it (and its df), so three seeds that happen to agree do not make a
    difference look certain (the ranking's many tests sit far out in the t's tails)."""
    ka, kb = len(a.values), len(b.values)
    diff = float(b.values.mean() - a.values.mean())
    if not (np.all(np.isfinite(a.g)) and np.all(np.isfinite(b.g)) and math.isfinite(diff)):
        return _untestable(diff, (ka, kb), "n/a: the metric is undefined on some scene set")
    if min(ka, kb) == 1:  # no seed spread on a side: these trained models, over scenes
        terms = (b.g.mean(axis=0) - a.g.mean(axis=0)) ** 2
        parts, covers = [(float(terms.sum()), a.scene_df)], SCENES_ONLY
        method = "stratified jackknife over scenes"
    elif paired_seeds and ka == kb:
        d = b.values - a.values
        terms = _cross(b.g - a.g, b.g - a.g, same=True)
        parts = [(float(np.var(d, ddof=1)) / ka, ka - 1), _scene_part(terms, a.scene_df)]
        covers, method = SEEDS_AND_SCENES, f"seed-paired t ({ka - 1} df) + shared scenes"
    else:
        (var_a, df_a), (var_b, df_b) = (_seed_var(r, seed_floor) for r in (a, b))
        terms = _cross(a.g, a.g, True) + _cross(b.g, b.g, True) - 2 * _cross(a.g, b.g, False)
        parts = [(var_a / ka, df_a), (var_b / kb, df_b), _scene_part(terms, a.scene_df)]
        covers, method = SEEDS_AND_SCENES, "Welch-Satterthwaite t + shared scenes"
    var = sum(v for v, _ in parts)
    if not var > 0:
        return _untestable(diff, (ka, kb), "n/a: no spread over scenes or seeds", covers)
    df = _satterthwaite(var, parts)
    se = math.sqrt(var)
    q = _t_quantile(0.5 + confidence / 2, df)
    low, high = max(diff - q * se, -a.span), min(diff + q * se, a.span)
    return Difference(diff, low, high, _p_two_sided(diff / se, df), se, df, (ka, kb), covers,
                      method)  # fmt: skip


def _scene_part(terms: np.ndarray, df: float) -> tuple[float, float]:
    """The scene variance the seeds share (never below 0) and its df."""
    return max(float(terms.sum()), 0.0), df


def _seed_var(r: Influence, floor: tuple[float, int] | None) -> tuple[float, int]:
    own = (float(np.var(r.values, ddof=1)), len(r.values) - 1)
    return floor if floor is not None and floor[0] > own[0] else own


def pooled_seed_var(influences: Sequence[Influence]) -> tuple[float, int] | None:
    """The seed variance pooled over the variants with 2+ seeds, and its df (None if none)."""
    parts = [(float(np.var(r.values, ddof=1)), len(r.values) - 1) for r in influences
             if len(r.values) > 1]  # fmt: skip
    df = sum(d for _, d in parts)
    return (sum(v * d for v, d in parts) / df, df) if df else None


def _untestable(diff: float, seeds, method: str, covers: str = "") -> Difference:
    nan = math.nan
    return Difference(diff, nan, nan, nan, nan, nan, seeds, covers, method)


def _satterthwaite(total: float, parts: Sequence[tuple[float, float]]) -> float:
    """Degrees of freedom of a sum of variance estimates with their own df."""
    denom = sum(v * v / df for v, df in parts if v > 0 and math.isfinite(df))
    return total * total / denom if denom > 0 else math.inf


def compare_scores(
    a: np.ndarray,
    b: np.ndarray,
    labels: np.ndarray,
    metric: str,
    paired_seeds: bool = False,
    confidence: float = CONFIDENCE,
) -> Difference:
    """b - a in `metric` (means over each side's seeds), its `confidence` interval and the
    two-sided p-value. `a` (ka, N) and `b` (kb, N): probabilities of spheres on the same scenes.

    A side with one seed: the difference of these trained models over validation scenes only
    (stratified jackknife variance; t with the rarer class's count - 1 df, normal for the rank
    metrics: scene_df). Two or more seeds
    each: seeds enter with their own degrees of freedom (Welch-Satterthwaite, or a paired t on
    per-seed differences with `paired_seeds`, for seeds that share real upstream trials), plus
    the scene variance the seeds share (jackknife covariance between seeds)."""
    a, _ = _check(a, labels, metric)
    b, labels = _check(b, labels, metric)
    return difference_of(
        Influence.of(a, labels, metric), Influence.of(b, labels, metric), paired_seeds, confidence
    )


def mover_difference(a: Interval, b: Interval, d: Difference) -> Difference:
    """`d` (b - a) with the interval MOVER builds from the two variants' own intervals (Newcombe
    1998, method 10, for a difference of proportions): used where the difference has no spread
    to test (e.g. both perfect on every scene), so its cell still shows what the data allow;
    conservative, since it ignores that the two share their scenes."""
    if not (a.has_interval and b.has_interval):
        return d
    low = d.difference - math.hypot(b.value - b.low, a.high - a.value)
    high = d.difference + math.hypot(b.high - b.value, a.value - a.low)
    return replace(d, low=low, high=high, method="MOVER of the two intervals (no spread)")


def delong_p(a: np.ndarray, b: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """DeLong's test of two correlated ROC AUCs on the same scenes (one model each): (b - a,
    two-sided p), NaN p where the variance is 0 (e.g. both AUCs 1). The table's cross-check of
    compare_scores (whose jackknife variance for one seed each equals it, tested)."""
    pos = np.asarray(labels) == 1
    if not pos.any() or pos.all():  # one class: no ROC AUC to compare
        return math.nan, math.nan
    diffs, v10, v01 = [], [], []
    for s in (np.asarray(a, np.float64), np.asarray(b, np.float64)):
        sp, sn = s[pos], s[~pos]
        psi = (sn[None, :] < sp[:, None]) + 0.5 * (sn[None, :] == sp[:, None])  # (pos, neg)
        diffs.append(psi.mean())
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    if min(pos.sum(), (~pos).sum()) < 2:  # one scene of a class has no variance to estimate
        return float(diffs[1] - diffs[0]), math.nan
    s10, s01 = np.cov(np.stack(v10)), np.cov(np.stack(v01))
    contrast = np.array([-1.0, 1.0])
    var = contrast @ s10 @ contrast / pos.sum() + contrast @ s01 @ contrast / (~pos).sum()
    diff = float(diffs[1] - diffs[0])
    if not var > 0:
        return diff, math.nan
    return diff, _p_two_sided(diff / math.sqrt(var), math.inf)


# --- many variants: the best, chosen honestly -------------------------------------------------


@dataclass
class BestSet:
    """All-pairs comparison of variants on one metric, Holm-corrected across every pair, so a
    statement "X is worse than Y" holds a family-wise error of alpha whichever variant turns out
    best; the confidence set for the best = the variants no other is shown better than."""

    order: list[str]  # best observed first
    pairs: dict[tuple[str, str], Difference]  # (x, y) -> y - x, x before y in `order`
    p_holm: dict[tuple[str, str], float]
    confidence_set: list[str]
    worse: dict[str, str]  # variant -> a variant shown better than it
    p_best: dict[str, float] = field(default_factory=dict)


def best_set(
    variants: Mapping[str, np.ndarray],
    labels: np.ndarray,
    metric: str,
    paired_seeds: bool = False,
    alpha: float = 1 - CONFIDENCE,
) -> BestSet:
    """Rank `variants` (name -> (seeds, N) scores) by `metric` and test every pair."""
    checked = {}
    for name, s in variants.items():
        checked[name], labels_checked = _check(s, labels, metric)
    labels = labels_checked
    reps = {n: Influence.of(s, labels, metric) for n, s in checked.items()}
    return best_set_of(reps, metric, paired_seeds, alpha)


def best_set_of(
    reps: Mapping[str, Influence], metric: str, paired_seeds: bool = False, alpha: float = 0.05
) -> BestSet:
    """best_set from each variant's Influence (on the same scenes)."""
    sign = 1.0 if TRIAL_METRICS[metric].goal == "min" else -1.0
    order = sorted(reps, key=lambda n: (sign * float(reps[n].values.mean()), n))
    floor = pooled_seed_var(list(reps.values()))
    pairs = {
        (x, y): difference_of(reps[x], reps[y], paired_seeds, 1 - alpha, floor)
        for i, x in enumerate(order)
        for y in order[i + 1 :]
    }
    keys = list(pairs)
    adjusted = bootstrap.holm([pairs[k].p_value for k in keys])
    p_holm = dict(zip(keys, adjusted, strict=True))
    worse: dict[str, str] = {}
    for (x, y), p in p_holm.items():
        if p < alpha:
            d = pairs[(x, y)].difference * sign  # > 0: y is worse than x
            loser, winner = (y, x) if d > 0 else (x, y)
            worse.setdefault(loser, winner)
    confidence_set = [n for n in order if n not in worse]
    return BestSet(order, pairs, p_holm, confidence_set, worse, _p_best(reps, sign))


def _p_best(reps: Mapping[str, Influence], sign: float, draws: int = 4000) -> dict[str, float]:
    """Share of draws from the estimates' approximate joint distribution in which each variant
    ranks first: the scene part with its covariance across variants (the same scenes), plus,
    with 2+ seeds, a t draw of the seed mean's error. A summary of the uncertainty, not a test."""
    rng = np.random.default_rng(bootstrap.RNG_SEED)
    g = np.stack([r.g.mean(axis=0) for r in reps.values()])  # (variants, N)
    if not np.all(np.isfinite(g)):
        return {n: math.nan for n in reps}
    scene = rng.standard_normal((draws, g.shape[1])) @ g.T  # (draws, variants)
    values = np.array([float(r.values.mean()) for r in reps.values()])
    total = values[None, :] + scene
    for j, r in enumerate(reps.values()):
        k = len(r.values)
        if k > 1:
            sd = float(np.std(r.values, ddof=1)) / math.sqrt(k)
            total[:, j] += sd * rng.standard_t(k - 1, size=draws)
    first = np.argmin(sign * total, axis=1)
    return {n: float(np.mean(first == j)) for j, n in enumerate(reps)}


def improvement_probability(
    better: Sequence[float], other: Sequence[float], goal: str, confidence: float = CONFIDENCE
) -> Interval:
    """P(a seed of `better` beats a seed of `other`) over all seed pairs, ties half, with
    Newcombe's score interval (it is the Mann-Whitney AUC of the seeds); NaN unless both have
    two or more seeds."""
    better, other = np.asarray(better, float), np.asarray(other, float)
    if len(better) < 2 or len(other) < 2:
        return Interval(math.nan, math.nan, math.nan, 0, "", "n/a: needs 2+ seeds each")
    sign = 1.0 if goal == "min" else -1.0
    wins = (sign * better[:, None] < sign * other[None, :]) + 0.5 * (
        better[:, None] == other[None, :]
    )
    value = float(wins.mean())
    low, high = auc_interval(value, len(better), len(other), confidence)
    return Interval(value, low, high, len(better) + len(other), "seed pairs", "Newcombe score")
