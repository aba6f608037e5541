"""The comparison table in the seed notebook's shape, as text (tabulate), CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tabulate import tabulate, tabulate_formats

from analysis.ranking import (
    Ranking,
    half_width,
    interval,
    rank_variants,
    ranking_notes,
    ranking_table,
)
from analysis.stats import (
    Comparison,
    Summary,
    TrialResult,
    VariantSummary,
    compare,
    summarize_variants,
    trial_results,
    verdict,
)
from tune_cilp.core.atomic import atomic_output
from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import TRIAL_METRICS, Metric
from tune_cilp.models.variants import variant_name
from tune_cilp.results import Experiment, TrialRecord

# The seed's rows, then two that survive class imbalance (labels and formats: the schema).
ROWS: tuple[Metric, ...] = tuple(
    TRIAL_METRICS[key]
    for key in (
        "val_loss",
        "params_m",
        "training_time_s",
        "val_accuracy",
        "val_balanced_accuracy",
        "val_f1",
    )
)
WELCH_TEST = "Welch's t-test, two-sided, 95% CI of the difference"  # JSON's "test", two columns
MAJORITY_BALANCED = 0.6  # at or below, with majority-rate accuracy: "mostly the majority"
FOOTER = (
    "Validation Loss: minimum over epochs; Accuracy, Balanced Accuracy and F1 (spheres positive): "
    "validation set at that epoch; Training Time: sum of epoch times. "
    "Cells: mean ± std (number of seeds)."
)


@dataclass
class ComparisonTable:
    """Variants' summaries, the two-variant comparisons, and the footer lines."""

    variants: list[VariantSummary]
    comparisons: dict[str, Comparison] = field(default_factory=dict)  # metric -> b - a
    notes: list[str] = field(default_factory=list)
    verdict: str = ""
    ranking: Ranking | None = None  # more than two variants

    @property
    def headers(self) -> list[str]:
        names = [v.name for v in self.variants]
        return ["Metric", *names, *(["Difference"] if self.comparisons else [])]

    def rows(self) -> list[list[str]]:
        """Formatted cells, one row per entry of ROWS."""
        return metric_rows(ROWS, self.variants, self.comparisons, _cell)


def metric_rows(
    metrics: Sequence[Metric],
    columns: Sequence[VariantSummary],
    comparisons: dict[str, Comparison],
    cell: Callable[[Summary, str], str],
) -> list[list[str]]:
    """One formatted row per metric: its label, a `cell` per column, then the Difference cell
    when there are comparisons (tables in the seed notebook's shape: metrics down, variants
    across)."""
    out = []
    for m in metrics:
        row = [m.label] + [cell(v.metrics[m.key], m.fmt) for v in columns]
        if comparisons:
            row.append(difference_cell(comparisons[m.key], m.fmt))
        out.append(row)
    return out


def fmt_value(value: float, spec: str) -> str:
    """`value` in `spec`, or "n/a" for a missing one."""
    return "n/a" if value is None or math.isnan(value) else format(value, spec)


def _cell(summary: Summary, spec: str) -> str:
    if summary.n == 0:
        return "n/a"
    if summary.n == 1:
        return fmt_value(summary.mean, spec)
    return f"{fmt_value(summary.mean, spec)} ± {fmt_value(summary.std, spec)} ({summary.n})"


def difference_cell(c: Comparison, spec: str) -> str:
    """The difference b - a, with its 95 % CI and Welch p when both sides have 2+ seeds."""
    diff = format(c.difference, "+" + spec) if not math.isnan(c.difference) else "n/a"
    if not c.testable:
        return diff
    return f"{diff} [{fmt_value(c.ci_low, spec)}, {fmt_value(c.ci_high, spec)}] p={c.p_value:.2g}"


def comparison_table(
    variants: list[VariantSummary], notes: list[str] | None = None
) -> ComparisonTable:
    """Build the table: with exactly two variants the Difference column and the verdict, with
    more a ranking against the best; notes for variants that predict mostly the majority class."""
    table = ComparisonTable(list(variants), notes=list(notes or []))
    table.notes += majority_class_notes(variants)
    if len(variants) > 2:
        table.ranking = rank_variants(variants)
        table.verdict = table.ranking.verdict()
    elif len(variants) == 2:
        a, b = variants
        table.comparisons = {m.key: compare(a.values(m.key), b.values(m.key)) for m in ROWS}
        table.verdict = verdict(a, b)
        table.notes.append(
            f"Difference = {b.name} - {a.name}; [95% CI of the difference] and two-sided p "
            "from Welch's t-test across seeds (shown only when both sides have 2+ seeds)."
        )
    return table


def majority_class_notes(variants: list[VariantSummary]) -> list[str]:
    """A note per variant whose balanced accuracy is <= MAJORITY_BALANCED while its accuracy
    reaches the validation split's majority-class rate: it mostly predicts that class."""
    notes = []
    for v in variants:
        rates = [t.majority_rate for t in v.trials if not math.isnan(t.majority_rate)]
        acc = v.metrics["val_accuracy"].mean
        balanced = v.metrics["val_balanced_accuracy"].mean
        if rates and balanced <= MAJORITY_BALANCED and acc >= min(rates) - 1e-9:
            notes.append(
                f"{v.name} predicts mostly the majority class: balanced accuracy "
                f"{balanced:.2f} at {acc:.2f} accuracy, majority rate {min(rates):.2f}"
            )
    return notes


def experiment_table(experiment: Experiment) -> ComparisonTable:
    """The comparison table of a loaded experiment. Its notes name every trial that failed, has
    damaged result files, is left out (and why), or has not finished."""
    results = trial_results(experiment)
    notes = []
    failed = [t for t in experiment.trials if t.status == "ERROR"]
    if failed:
        notes.append(
            f"{len(failed)} trial(s) failed (ERROR): "
            + ", ".join(_trial_name(t) for t in failed)
            + "; the traceback is in error.txt in each trial's directory."
        )
    notes += [f"trial {_trial_name(t)}: {t.damage}" for t in experiment.trials if t.damage]
    reported = {r.trial_id for r in results}
    left_out: dict[str, list[TrialRecord]] = {}
    for t in experiment.trials:
        if t.trial_id not in reported:
            left_out.setdefault(_left_out_reason(t), []).append(t)
    for reason, trials in left_out.items():
        names = ", ".join(_trial_name(t) for t in trials)
        notes.append(f"{len(trials)} trial(s) {reason} and are left out: {names}.")
    unfinished = [t for t in results if t.status != "TERMINATED"]
    if unfinished:
        states = ", ".join(sorted({t.status for t in unfinished}))
        notes.append(f"{len(unfinished)} trial(s) not finished ({states}): partial results.")
    return comparison_table(summarize_variants(results), notes)


def _left_out_reason(trial: TrialRecord) -> str:
    """Why a trial has no finite validation loss to show."""
    if trial.history:
        return "reported no finite validation loss"
    if trial.damage:
        return "have no intact epoch in their result files"
    if trial.status == "ERROR":
        return "failed before reporting"
    if trial.status == "TERMINATED":
        return "finished without reporting a result"
    return "have not reported a validation loss yet"


def _trial_name(trial: TrialRecord) -> str:
    """ "3f2a1_00001 (concat-maxpool seed=52)": enough to find a trial's configuration."""
    config = trial.config
    return f"{trial.trial_id} ({variant_name(config)} seed={config.get('seed', '?')})"


def check_format(fmt: str) -> str:
    """Return `fmt` if tabulate knows it, else raise UserError listing the choices."""
    if fmt not in tabulate_formats:
        raise UserError(
            f"--format {fmt!r}: unknown table format (choose from {', '.join(tabulate_formats)})"
        )
    return fmt


def format_table(table: ComparisonTable, fmt: str = "grid") -> str:
    """The table in a tabulate format, then the footer notes and the verdict line; with no
    variant to show, a line saying so and the notes that say why."""
    if not table.variants:
        # The notes say why: not reported yet, failed, damaged result files.
        text, notes = "no trial has a validation loss to show yet", table.notes
    elif table.ranking is not None:
        headers, rows = ranking_table(table.ranking)
        text = tabulate(rows, headers=headers, tablefmt=check_format(fmt), disable_numparse=True)
        *legend, verdict_line = ranking_notes(table.ranking)
        notes = [*legend, *table.notes, verdict_line]
    else:
        # disable_numparse: keep our number formats ("0.500", not tabulate's "0.5")
        text = tabulate(
            table.rows(), headers=table.headers, tablefmt=check_format(fmt), disable_numparse=True
        )
        notes = [FOOTER, *table.notes] + (["Verdict: " + table.verdict] if table.verdict else [])
    # Wrapped at spaces only: a variant name such as "concat-stride" stays in one piece.
    return "\n".join([text, *(textwrap.fill(n, 100, break_on_hyphens=False) for n in notes)])


def to_records(table: ComparisonTable) -> list[dict[str, Any]]:
    """One flat dict per metric: per-variant mean/std/n and, for two variants, the difference."""
    return metric_records(ROWS, table.variants, table.comparisons)


def metric_records(
    metrics: Sequence[Metric],
    columns: Sequence[VariantSummary],
    comparisons: dict[str, Comparison],
    ci_half_width: bool = False,
) -> list[dict[str, Any]]:
    """The numbers behind `metric_rows`, unformatted: per metric its label and key, per column
    "<name> mean", "<name> std" and "<name> n" (and "<name> ci_half_width", the 95 % CI's, when
    the table's cells show it), and with comparisons the difference, its CI and Welch's p (what
    --csv writes and --json's "rows" hold, for every kind of table)."""
    records = []
    for m in metrics:
        rec: dict[str, Any] = {"metric": m.label, "key": m.key}
        for v in columns:
            s = v.metrics[m.key]
            rec.update({f"{v.name} mean": s.mean, f"{v.name} std": s.std, f"{v.name} n": s.n})
            if ci_half_width:
                rec[f"{v.name} ci_half_width"] = half_width(s.std, s.n)
        if comparisons:
            c = comparisons[m.key]
            rec.update(
                {
                    "difference": c.difference,
                    "ci_low": c.ci_low,
                    "ci_high": c.ci_high,
                    "p_value": c.p_value,
                }
            )
        records.append(rec)
    return records


def variant_dict(v: VariantSummary) -> dict[str, Any]:
    """One variant for JSON: its name, config, metric summaries, best trial and every trial's
    best-epoch numbers (NaN left in: the caller's `nan_to_none` turns them into null)."""
    return {
        "name": v.name,
        "config": v.config,
        "metrics": {m: asdict(s) for m, s in v.metrics.items()},
        "best_trial": v.best.trial_id,
        "trials": [trial_dict(t) for t in v.trials],
    }


def trial_dict(t: TrialResult) -> dict[str, Any]:
    """One trial for JSON: id, seed, status, epochs reported, best epoch and its numbers."""
    return {
        "trial_id": t.trial_id,
        "seed": t.config.get("seed"),
        "status": t.status,
        "epochs": t.epochs,
        "best_epoch": t.best_epoch,
        "metrics": t.metrics,
    }


def to_json_dict(table: ComparisonTable, experiment_path: str = "") -> dict[str, Any]:
    """Everything behind the table, JSON-ready (NaN becomes null)."""
    return nan_to_none(
        {
            "experiment": experiment_path,
            "rows": to_records(table),
            "variants": [variant_dict(v) for v in table.variants],
            "comparison": {m: asdict(c) for m, c in table.comparisons.items()},
            "test": WELCH_TEST
            if table.comparisons
            else "Welch's t-test against the best, Holm-corrected"
            if table.ranking is not None
            else None,
            "ranking": None
            if table.ranking is None
            else [
                {
                    "rank": place,
                    "name": r.variant.name,
                    "mean": r.variant.metrics[table.ranking.metric].mean,
                    "ci_half_width": interval(r.variant.values(table.ranking.metric)).half_width,
                    "difference_vs_best": None if r.vs_best is None else r.vs_best.difference,
                    "p_welch": None if r.vs_best is None else r.vs_best.p_value,
                    "p_holm": r.p_holm,
                    "p_improvement": r.p_improvement,
                }
                for place, r in enumerate(table.ranking.rows, start=1)
            ],
            "verdict": table.verdict or None,
            "notes": table.notes,
        }
    )


def nan_to_none(obj: Any) -> Any:
    """`obj` with every NaN float, however deeply nested, replaced by None (JSON's null)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [nan_to_none(v) for v in obj]
    return obj


def _write_atomic(path: str, text: str) -> None:
    """Write via a temp file in the same directory, then rename: never a half-written file."""
    path = os.path.abspath(os.path.expanduser(path))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise UserError(f"{path}: directory {folder} does not exist")
    with atomic_output(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def write_csv(table: ComparisonTable, path: str) -> None:
    """The table's numbers (unformatted) as CSV, one row per metric."""
    write_records_csv(to_records(table), path)


def write_records_csv(records: Sequence[dict[str, Any]], path: str) -> None:
    """`records` (flat dicts with the same keys, e.g. `metric_records`) as CSV, written
    atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(records[0]))
    writer.writeheader()
    writer.writerows(records)
    _write_atomic(path, buf.getvalue())


def write_json(table: ComparisonTable, path: str, experiment_path: str = "") -> None:
    """Everything behind the table as JSON (see to_json_dict)."""
    write_json_data(to_json_dict(table, experiment_path), path)


def write_json_data(data: dict[str, Any], path: str) -> None:
    """`data` (already JSON-ready: see `nan_to_none`) as indented JSON, written atomically."""
    _write_atomic(path, json.dumps(data, indent=2) + "\n")
