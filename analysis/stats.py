"""Statistics on plain data: best epoch per trial, per-variant mean/std/count, two-variant test.

Everything here takes lists and dicts (no Ray, no files) so it can be checked by hand.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis.cells import p_cell, sig
from tune_cilp.core.metrics import SELECT, TRIAL_METRICS
from tune_cilp.fusion.variants import variant_name
from tune_cilp.results import Experiment, kept_row

SEED_KEY = "seed"
NAME_KEYS = ("variant", "downsample")  # in every variant_name


@dataclass
class TrialResult:
    """One trial reduced to its best epoch (by val_loss) plus cost figures."""

    trial_id: str
    config: dict[str, Any]
    status: str
    epochs: int  # epochs reported so far
    best_epoch: int
    metrics: dict[str, float]  # keys of tune_cilp.core.metrics.TRIAL
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)
    checkpoint: Any = field(default=None, repr=False)
    majority_rate: float = math.nan  # of its validation split (reported by the trial)


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (ddof=1, NaN for n=1), count, min and max of a metric."""

    mean: float
    std: float
    n: int
    min: float
    max: float


@dataclass
class VariantSummary:
    """All trials of one configuration (across seeds): per-metric summaries and the best trial."""

    name: str
    config: dict[str, Any]  # shared config without the seed
    trials: list[TrialResult]
    metrics: dict[str, Summary]
    best: TrialResult

    def values(self, metric: str) -> list[float]:
        return [t.metrics[metric] for t in self.trials]


@dataclass(frozen=True)
class Comparison:
    """Second variant minus first on one metric, with Welch's t-test across seeds.

    ci_low/ci_high: 95 % confidence interval of the difference of means (Welch-Satterthwaite
    degrees of freedom); p_value: two-sided. Both NaN when a side has fewer than two seeds or
    both sides have zero spread.
    """

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n_a: int
    n_b: int

    @property
    def testable(self) -> bool:
        return not math.isnan(self.p_value)


def summarize_trial(
    trial_id: str,
    config: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    status: str = "TERMINATED",
    checkpoint: Any = None,
) -> TrialResult | None:
    """Reduce one trial's per-epoch results to a TrialResult at the epoch it kept (kept_row);
    None if it reported no val_loss."""
    row = kept_row(history)
    if row is None:
        return None
    times = [r.get("epoch_time_s", r.get("time_this_iter_s", math.nan)) for r in history]
    peaks = [r["peak_memory_mb"] for r in history if r.get("peak_memory_mb") is not None]
    costs = {
        "params_m": float(row.get("num_parameters", math.nan)) / 1e6,
        "training_time_s": float(np.sum(times)),
        "s_per_epoch": float(np.mean(times)),
        "peak_memory_mb": float(max(peaks)) if peaks else math.nan,
    }
    # in the schema's order; a classification metric as the trial reported it at that epoch
    metrics = {k: costs[k] if k in costs else float(row.get(k, math.nan)) for k in TRIAL_METRICS}
    return TrialResult(
        trial_id=trial_id,
        config=dict(config),
        status=status,
        epochs=len(history),
        best_epoch=int(row.get("epoch", history.index(row) + 1)),
        metrics=metrics,
        history=[dict(r) for r in history],
        checkpoint=checkpoint,
        majority_rate=float(row.get("val_majority_rate", math.nan)),
    )


def summarize(values: Sequence[float]) -> Summary:
    """Mean, std (ddof=1; NaN for a single value), count, min and max."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return Summary(math.nan, math.nan, 0, math.nan, math.nan)
    std = float(np.std(arr, ddof=1)) if arr.size > 1 else math.nan
    return Summary(float(arr.mean()), std, int(arr.size), float(arr.min()), float(arr.max()))


def _format_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def config_group(config: Mapping[str, Any]) -> tuple:
    """What groups trials into one variant: their configuration without the seed, hashable."""
    return tuple(sorted((k, repr(v)) for k, v in config.items() if k != SEED_KEY))


def variant_names(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Name per config: its variant_name ("concat-maxpool"), plus "key=value" for every other
    key that differs between the configs."""
    keys = sorted({k for c in configs for k in c} - {SEED_KEY, *NAME_KEYS})
    differing = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
    names = []
    for c in configs:
        base = variant_name(c) if "variant" in c else "trial"
        extra = [f"{k}={_format_value(c.get(k))}" for k in differing]
        names.append(" ".join([base, *extra]))
    return names


def group_variants(trials: Sequence[TrialResult]) -> dict[str, list[TrialResult]]:
    """Trials grouped by config-without-seed, named by `variant_names`, in first-seen order."""
    groups: dict[tuple, list[TrialResult]] = {}
    for t in trials:
        groups.setdefault(config_group(t.config), []).append(t)
    names = variant_names([g[0].config for g in groups.values()])
    return dict(zip(names, groups.values(), strict=True))


def distinct_seeds(trials: Sequence[TrialResult]) -> tuple[list[TrialResult], list[str]]:
    """One trial per configuration and seed (the first), and a note naming the others: a trial
    that repeats a configuration and seed (e.g. --num-samples on a grid, from before it was
    refused) is the same run again, not another seed, and counting it would shrink every
    interval."""
    seen: set[tuple] = set()
    kept, repeats = [], []
    for t in trials:
        key = (config_group(t.config), repr(t.config.get(SEED_KEY)))
        if key in seen:
            repeats.append(t)
        else:
            seen.add(key)
            kept.append(t)
    if not repeats:
        return kept, []
    names = ", ".join(f"{t.trial_id} (seed={t.config.get(SEED_KEY, '?')})" for t in repeats)
    return kept, [
        f"{len(repeats)} trial(s) repeat a configuration and seed already counted and are left "
        f"out (n counts distinct seeds): {names}."
    ]


def summarize_variants(trials: Sequence[TrialResult]) -> list[VariantSummary]:
    """One VariantSummary per configuration (trials equal except their seed)."""
    out = []
    for name, group in group_variants(trials).items():
        metrics = {m: summarize([t.metrics[m] for t in group]) for m in TRIAL_METRICS}
        config = {k: v for k, v in group[0].config.items() if k != SEED_KEY}
        best = min(group, key=lambda t: t.metrics[SELECT])
        out.append(VariantSummary(name, config, list(group), metrics, best))
    return out


def compare(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Comparison:
    """Difference of means b - a with Welch's t-test (unequal variances) and its CI."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(b_arr.mean() - a_arr.mean())
    nan = math.nan
    spread = a_arr.size > 1 and b_arr.size > 1 and (a_arr.std() > 0 or b_arr.std() > 0)
    if not spread:
        return Comparison(diff, nan, nan, nan, int(a_arr.size), int(b_arr.size))
    from scipy import stats as scipy_stats  # here: ~1.6 s to import, needed only with 2+ seeds

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = scipy_stats.ttest_ind(b_arr, a_arr, equal_var=False)
        ci = res.confidence_interval(confidence)
    return Comparison(
        diff, float(ci.low), float(ci.high), float(res.pvalue), int(a_arr.size), int(b_arr.size)
    )


def verdict(a: VariantSummary, b: VariantSummary, metric: str = SELECT, alpha: float = 0.05) -> str:
    """One line: is the difference in `metric` between two variants significant at `alpha`?"""
    c = compare(a.values(metric), b.values(metric))
    sizes = f"(n={c.n_a} vs {c.n_b})"
    if min(c.n_a, c.n_b) < 2:
        return f"no test possible for {metric}: a variant has a single seed {sizes}"
    if not c.testable:
        return f"no test possible for {metric}: no spread across seeds {sizes}"
    p = p_cell(c.p_value)
    numbers = (
        f"{b.name} - {a.name} = {sig(c.difference)} [{sig(c.ci_low)}, {sig(c.ci_high)}], "
        f"Welch's t-test across seeds, p {p if p.startswith('<') else '= ' + p}; no per-scene "
        "scores, so the scenes' own variation is not covered"
    )
    if c.p_value < alpha:
        return f"the difference in {metric} is significant at {alpha:.0%} ({numbers}) {sizes}"
    return f"not shown to differ in {metric}, which is not equivalence ({numbers}) {sizes}"


def trial_results(experiment: Experiment) -> list[TrialResult]:
    """Each trial reduced to its best epoch; trials without a finite validation loss are left out
    (experiment_table names them in its notes)."""
    out = []
    for t in experiment.trials:
        result = summarize_trial(t.trial_id, t.config, t.history, t.status, t.checkpoint)
        if result is not None:
            out.append(result)
    return out
