"""From a Ray Tune experiment directory to the comparison table, statistics, plots and review;
`report` reads fusion and CILP experiments alike.

import analysis
print(analysis.report("~/ray_results/seed-ablation", fmt="github"))

The statistics on per-scene scores, for notebooks and for checking them (docs/STATISTICS.md):
analysis.metric_interval(scores, labels, metric) and analysis.compare_scores(a, b, labels, metric).
"""

from __future__ import annotations

from analysis.inference import Difference, Interval, compare_scores, metric_interval
from analysis.stats import TrialResult, VariantSummary, summarize_variants, trial_results
from analysis.table import ComparisonTable, comparison_table, experiment_table, format_table
from tune_cilp.results import Experiment, TrialRecord, load_experiment

__all__ = [
    "ComparisonTable",
    "Difference",
    "Experiment",
    "Interval",
    "TrialRecord",
    "TrialResult",
    "VariantSummary",
    "compare_scores",
    "comparison_table",
    "experiment_table",
    "format_table",
    "load_experiment",
    "metric_interval",
    "report",
    "summarize_variants",
    "trial_results",
]


def report(experiment_path: str, fmt: str = "grid") -> str:
    """The table of the experiment at `experiment_path` as text in tabulate's `fmt`, followed by
    its notes and, for two variants (or chains), a one-line verdict: the CILP table for a CILP
    experiment (analysis.cilp_table), the fusion comparison table for any other."""
    # Here, not at the top: the CILP table's imports (torch, the chain) are slow and most
    # `import analysis` users never need them.
    from analysis.cilp_table import cilp_report, is_cilp_experiment

    if is_cilp_experiment(experiment_path):
        return cilp_report(experiment_path, fmt)
    return format_table(experiment_table(load_experiment(experiment_path)), fmt)
