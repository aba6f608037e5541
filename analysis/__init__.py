"""From a Ray Tune experiment directory to the comparison table, statistics, plots and review.

import analysis
print(analysis.report("~/ray_results/seed-ablation", fmt="github"))
"""

from __future__ import annotations

from analysis.stats import TrialResult, VariantSummary, summarize_variants, trial_results
from analysis.table import ComparisonTable, comparison_table, experiment_table, format_table
from tune_cilp.results import Experiment, TrialRecord, load_experiment

__all__ = [
    "ComparisonTable",
    "Experiment",
    "TrialRecord",
    "TrialResult",
    "VariantSummary",
    "comparison_table",
    "experiment_table",
    "format_table",
    "load_experiment",
    "report",
    "summarize_variants",
    "trial_results",
]


def report(experiment_path: str, fmt: str = "grid") -> str:
    """The comparison table of the experiment at `experiment_path` as text in tabulate's `fmt`,
    followed by its notes and, for two variants, a one-line verdict on val_loss."""
    return format_table(experiment_table(load_experiment(experiment_path)), fmt)
