"""The comparison table in the seed notebook's shape, as text (tabulate), CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from tabulate import tabulate, tabulate_formats

from analysis.bootstrap import scene_metrics
from analysis.cells import (
    estimate_cell,
    fmt_value,
    for_format,
    p_cell,
    paired_cell,
    sig,
    spread_cell,
)
from analysis.inference import Difference
from analysis.one_class import UNDEFINED, OneClass, one_class_from_rates, one_class_of, tagged
from analysis.race_report import HEADERS as RACE_HEADERS
from analysis.race_report import RaceReport, design_of, race_notes, race_report
from analysis.ranking import (
    COST,
    MCNEMAR,
    WELCH,
    Ranking,
    quality_metrics,
    rank_variants,
    ranking_notes,
    ranking_tables,
    vs_best_metrics,
)
from analysis.scenes import SCENES_ONLY, SceneStats, scene_stats
from analysis.stats import (
    Comparison,
    Summary,
    TrialResult,
    VariantSummary,
    compare,
    distinct_seeds,
    summarize_variants,
    trial_results,
    verdict,
)
from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import SCENE_METRICS, SELECT, TRIAL_METRICS, Metric, majority_rate
from tune_cilp.core.path_guard import output
from tune_cilp.fusion.variants import variant_name
from tune_cilp.results import Experiment, TrialRecord

# Cost figures only the ranking's cost table shows (the seed's table has parameters and time).
RANKING_COSTS = ("s_per_epoch", "peak_memory_mb")


def row_metrics() -> tuple[Metric, ...]:
    """The table's rows, in the schema's order (tune_cilp.core.metrics.trial_metrics): the
    seed's rows, then every other classification metric of the registry."""
    return tuple(m for m in TRIAL_METRICS.values() if m.key not in RANKING_COSTS)


WELCH_TEST = "Welch's t-test, two-sided, 95% CI of the difference"  # JSON's "test", two columns
PAIRED_TEST = (
    "analysis.inference.compare_scores: stratified jackknife over the same scenes, seeds with "
    "k - 1 df; two-sided, 95% interval of the difference"
)
CHECK = "check"  # the cross-check column: McNemar / DeLong (one seed each) or Welch (2+)
MAJORITY_BALANCED = 0.6  # at or below, with majority-rate accuracy: "mostly the majority"
FOOTER = (
    "Validation Loss: minimum over epochs (the seed notebook's); Accuracy, Balanced Accuracy, F1, "
    "ROC AUC, AP (average precision; spheres positive) and Brier Score: at that epoch; Training "
    "Time: sum of epoch times. Cells: value (mean over seeds) [95% interval] where per-scene "
    "scores give one; mean (min–max) across seeds for the rest."
)


@dataclass
class ComparisonTable:
    """Variants' summaries, the two-variant comparisons, and the footer lines.

    comparisons: Welch's test across seeds per metric (b - a); paired: compare_scores on the
    same scenes per scene metric (b - a, the table's scores); mcnemar: (p, scenes only a gets
    right, only b) and delong: DeLong's p of the ROC AUC difference, when both have one seed;
    primary: the metric the verdict decides on (the space's); one_class: the scenes are all of
    one class (analysis/one_class.py), else None."""

    variants: list[VariantSummary]
    comparisons: dict[str, Comparison] = field(default_factory=dict)  # metric -> b - a
    notes: list[str] = field(default_factory=list)
    verdict: str = ""
    ranking: Ranking | None = None  # more than two variants
    scenes: SceneStats | None = None
    paired: dict[str, Difference] = field(default_factory=dict)
    mcnemar: tuple[float, int, int] | None = None
    delong: float | None = None
    primary: str = SELECT
    one_class: OneClass | None = None
    race: RaceReport | None = None  # a --race experiment: the race re-derived

    def mark(self, key: str) -> str:
        """The one-class tag of metric `key`'s row ("undefined", "cubes only"), else ""."""
        return self.one_class.mark(key) if self.one_class is not None else ""

    @property
    def second_test(self) -> str:
        """The cross-check beside compare_scores: McNemar and DeLong (one seed each), Welch
        (2+ each)."""
        if self.mcnemar is not None:
            return MCNEMAR
        return WELCH if any(c.testable for c in self.comparisons.values()) else ""

    @property
    def headers(self) -> list[str]:
        names = [f"{v.name}\n({_seeds(len(v.trials))})" for v in self.variants]
        if len(self.variants) != 2:
            return ["Metric", *names]
        tests = (["p"] if self.paired else []) + ([f"p {CHECK}"] if self.second_test else [])
        return ["Metric", *names, "Difference\n[95% CI]", *tests]

    def rows(self) -> list[list[str]]:
        """Formatted cells, one row per row_metrics() (the primary metric's label marked, and a
        metric a one-class split leaves undefined or one-sided)."""
        out = []
        for m in row_metrics():
            tags = ["primary" if m.key == self.primary else "", self.mark(m.key)]
            row = [tagged(m.label, tags)] + [self._cell(v, m) for v in self.variants]
            if len(self.variants) == 2:
                row += self._difference_cells(m)
            out.append(row)
        return out

    def _cell(self, v: VariantSummary, m: Metric) -> str:
        if self.mark(m.key) == UNDEFINED:  # e.g. F1 of cubes only: 0 by convention, no number
            return "n/a"
        if self.scenes is not None and m.key in SCENE_METRICS:
            return estimate_cell(self.scenes.variants[v.name].estimates[m.key], m.fmt, m.bounds)
        return spread_cell(v.values(m.key), m.fmt)

    def _difference_cells(self, m: Metric) -> list[str]:
        if self.mark(m.key) == UNDEFINED:  # no difference and no test of what has no number
            return ["n/a"] + [""] * (len(self.headers) - len(self.variants) - 2)
        welch = self.comparisons[m.key]
        paired = self.paired.get(m.key)
        cells = [paired_cell(paired, m.fmt) if paired else welch_cell(welch, m.fmt)]
        if self.paired:
            cells.append(p_cell(paired.p_value) if paired else "")
        if self.second_test == MCNEMAR:
            check = {"val_accuracy": self.mcnemar[0], "val_roc_auc": self.delong}.get(m.key)
            cells.append("" if check is None else p_cell(check))
        elif self.second_test == WELCH:
            cells.append(p_cell(welch.p_value) if welch.testable else "")
        return cells


def metric_rows(
    metrics: Sequence[Metric],
    columns: Sequence[VariantSummary],
    comparisons: dict[str, Comparison],
    cell: Callable[[Summary, str], str],
) -> list[list[str]]:
    """One formatted row per metric: its label, a `cell` per column, then the Difference cell
    (Welch across seeds) when there are comparisons: metrics down, columns across (the CILP
    table's shape)."""
    out = []
    for m in metrics:
        row = [m.label] + [cell(c.metrics[m.key], m.fmt) for c in columns]
        if comparisons:
            row.append(difference_cell(comparisons[m.key], m.fmt))
        out.append(row)
    return out


def difference_cell(c: Comparison, spec: str) -> str:
    """The difference b - a, with its 95 % CI and Welch p when both sides have 2+ seeds."""
    diff = format(c.difference, "+" + spec) if not math.isnan(c.difference) else "n/a"
    if not c.testable:
        return diff
    return f"{diff} [{fmt_value(c.ci_low, spec)}, {fmt_value(c.ci_high, spec)}] p={c.p_value:.2g}"


def _seeds(n: int) -> str:
    return f"{n} seed" + ("s" if n != 1 else "")


def welch_cell(c: Comparison, spec: str) -> str:
    """The difference of means b - a, with Welch's 95 % CI when both sides have 2+ seeds."""
    diff = format(c.difference, "+" + spec) if not math.isnan(c.difference) else "n/a"
    if not c.testable:
        return diff
    return f"{diff}\n[{fmt_value(c.ci_low, '+' + spec)}, {fmt_value(c.ci_high, '+' + spec)}]"


def comparison_table(
    variants: list[VariantSummary],
    notes: list[str] | None = None,
    primary: str = SELECT,
    paired_seeds: bool = False,
) -> ComparisonTable:
    """Build the table: per-scene statistics from the trials' stored scores (or a note why
    there are none); with exactly two variants the difference columns and the verdict, with
    more a ranking; notes for variants that predict mostly the majority class and the no-skill
    reference. `primary`: the metric verdicts decide on (the space's); `paired_seeds`: seed i
    of every variant shares real upstream trials (CILP chains)."""
    table = ComparisonTable(list(variants), notes=list(notes or []), primary=primary)
    if variants:
        table.scenes, scene_notes = scene_stats(variants, paired_seeds)
        table.notes += scene_notes
    table.one_class = _one_class(table)
    if table.one_class is not None:
        table.notes.append(table.one_class.note())
    # The primary metric undefined or one-sided on these scenes: no verdict (one_class.refusal).
    refusal = table.one_class.refusal(primary) if table.one_class is not None else ""
    scenes_rate = majority_rate(table.scenes.labels) if table.scenes is not None else math.nan
    table.notes += majority_class_notes(variants, scenes_rate)
    table.notes += no_skill_note(table)
    majority = {name for name, *_ in _majority_variants(variants, scenes_rate)}
    if len(variants) > 2 and refusal:  # nothing to rank on: every variant's column, no order
        if table.scenes is not None:
            table.notes.append(table.scenes.note())
    elif len(variants) > 2:
        table.ranking = rank_variants(variants, table.scenes, primary, table.one_class)
        table.verdict = table.ranking.verdict()
    elif len(variants) == 2:
        a, b = variants
        rows = row_metrics()
        table.comparisons = {m.key: compare(a.values(m.key), b.values(m.key)) for m in rows}
        if table.scenes is not None:
            s = table.scenes
            table.paired = {m.key: s.compare(a.name, b.name, m.key) for m in rows if m.key in
                            SCENE_METRICS}  # fmt: skip
            table.mcnemar = s.mcnemar(a.name, b.name)
            table.delong = s.delong(a.name, b.name)
            table.notes.append(s.note())
        table.notes.append(_difference_note(table))
        table.verdict = refusal or two_variant_verdict(table)
    elif table.scenes is not None:  # one variant: its intervals still need saying what they are
        table.notes.append(table.scenes.note())
    if refusal and len(variants) > 1:
        table.verdict = refusal
    elif table.verdict and len(variants) > 1:
        sign = 1.0 if TRIAL_METRICS[primary].goal == "min" else -1.0
        best = min(variants, key=lambda v: sign * v.metrics[primary].mean).name
        if table.ranking is not None:
            best = table.ranking.best.name
        if all(v.name in majority for v in variants):
            table.verdict += (
                "; caution: every variant predicts mostly the majority class (see the note), "
                f"so no {primary} here shows that it separates the classes"
            )
        elif best in majority:  # a low loss from answering "cubes" everywhere is no win
            table.verdict += (
                f"; caution: {best} predicts mostly the majority class (see the note), so its "
                f"{primary} does not show that it separates the classes"
            )
        if table.one_class is not None:
            table.verdict += table.one_class.caution(primary)
    return table


def _one_class(table: ComparisonTable) -> OneClass | None:
    """Whether the table's scenes are all of one class: from their stored labels, else from the
    majority-class rate every trial reported."""
    if table.scenes is not None:
        return one_class_of(table.scenes.labels, table.scenes.split_name)
    return one_class_from_rates(t.majority_rate for v in table.variants for t in v.trials)


def no_skill_note(table: ComparisonTable) -> list[str]:
    """The prevalence-only model's loss and Brier on the table's scenes: the line a variant must
    beat to have learnt anything (a loss near it is the base rate, not a classifier)."""
    if table.scenes is None:
        return []
    labels = table.scenes.labels
    rate = float(np.mean(labels == 1))
    if rate in (0.0, 1.0):
        return []
    ones = np.ones((1, len(labels)))
    ref = scene_metrics(np.full(len(labels), rate), labels, ones, ("val_loss", "val_brier"))
    return [
        f"No-skill reference: scoring every scene at its sphere rate {rate:.3f} gives Validation "
        f"Loss {ref['val_loss'][0]:.3f} and Brier Score {ref['val_brier'][0]:.3f} (ROC AUC 0.5; "
        f"answering 'cubes' everywhere: accuracy {majority_rate(labels):.3f}, balanced 0.5)."
    ]


def _difference_note(table: ComparisonTable) -> str:
    a, b = table.variants
    parts = [f"Difference = {b.name} - {a.name}"]
    if table.paired:
        parts.append(
            "quality rows: compare_scores on the same scenes (its 95% interval and p); rows "
            f"other than the primary ({table.primary}) are exploratory, their p uncorrected"
        )
    if table.second_test == MCNEMAR:
        only_a, only_b = table.mcnemar[1:]
        delong = "" if table.delong is None else " and DeLong's test on ROC AUC"
        parts.append(
            f"p {CHECK}: McNemar's exact test on accuracy ({only_a} scenes only {a.name} gets "
            f"right at 0.5, {only_b} only {b.name}){delong}"
        )
    elif table.second_test == WELCH:
        parts.append(
            f"p {CHECK}: Welch's t-test across seeds, ignoring the scenes (its 95% CI on the "
            "cost rows)"
        )
    else:
        parts.append("no test across seeds: a side has a single seed")
    return "; ".join(parts) + "."


def two_variant_verdict(table: ComparisonTable, alpha: float = 0.05) -> str:
    """One line on the primary metric: which variant is better, on which scores, over what
    (scenes only, or seeds and scenes), claiming no more than that design allows."""
    a, b = table.variants
    metric = table.primary
    if table.scenes is None:  # no per-scene scores: the seeds alone
        return verdict(a, b, metric)
    s = table.scenes
    d = s.compare(a.name, b.name, metric, verdict=True)
    n = f"(n={len(a.trials)} vs {len(b.trials)} seeds)"
    where = f"on {s.verdict_scores}, over {d.covers or s.coverage}"
    if math.isnan(d.p_value):
        if d.difference == 0 and math.isnan(d.se):
            return f"no difference in {metric}: the two score every scene alike ({where}) {n}"
        return f"no test of {metric}: {d.method} ({where}) {n}"
    numbers = (
        f"{b.name} - {a.name} = {sig(d.difference)} [{sig(d.low)}, {sig(d.high)}], "
        f"p {_p_words(d.p_value)}"
    )
    if d.p_value < alpha:
        sign = 1.0 if TRIAL_METRICS[metric].goal == "min" else -1.0
        better = a.name if sign * d.difference > 0 else b.name
        word = "lower" if sign > 0 else "higher"
        head = f"{better} has the {word} {metric} ({numbers}; {where})"
    else:
        head = (
            f"{a.name} and {b.name} are not shown to differ in {metric} ({numbers}; {where}); "
            "that is not equivalence"
        )
    if d.covers == SCENES_ONLY:
        head += (
            "; a statement about these trained models: one seed per variant says nothing about "
            "the architectures (run with --seeds 51,52,53)"
        )
    return f"{head} {n}"


def _p_words(p: float) -> str:
    cell = p_cell(p)
    return cell if cell.startswith("<") else f"= {cell}"


def _majority_variants(
    variants: list[VariantSummary], fallback: float
) -> list[tuple[str, float, float, float]]:
    """(name, balanced accuracy, accuracy, majority rate) of each variant that mostly predicts
    the majority class (see majority_class_notes)."""
    found = []
    for v in variants:
        rates = [t.majority_rate for t in v.trials if not math.isnan(t.majority_rate)]
        rates = rates or ([fallback] if math.isfinite(fallback) else [])
        acc = v.metrics["val_accuracy"].mean
        balanced = v.metrics["val_balanced_accuracy"].mean
        if rates and balanced <= MAJORITY_BALANCED and acc >= min(rates) - 1e-9:
            found.append((v.name, balanced, acc, min(rates)))
    return found


def majority_class_notes(variants: list[VariantSummary], fallback: float = math.nan) -> list[str]:
    """One note naming the variants whose balanced accuracy is <= MAJORITY_BALANCED while
    their accuracy reaches the validation split's majority-class rate: they mostly predict that
    class (mean balanced accuracy and accuracy over seeds). The rate is the one the trials
    reported, else `fallback` (e.g. from the stored per-scene labels, for trials that did not
    report it)."""
    found = _majority_variants(variants, fallback)
    if not found:
        return []
    if len(found) == 1:
        name, balanced, acc, rate = found[0]
        return [
            f"{name} predicts mostly the majority class: balanced accuracy {balanced:.2f} at "
            f"{acc:.2f} accuracy, majority rate {rate:.2f}"
        ]
    cells = ", ".join(f"{name} ({balanced:.2f} at {acc:.2f})" for name, balanced, acc, _ in found)
    return [
        f"{len(found)} variants predict mostly the majority class (balanced accuracy at "
        f"accuracy; majority rate {min(f[3] for f in found):.2f}): {cells}"
    ]


def experiment_table(experiment: Experiment) -> ComparisonTable:
    """The comparison table of a loaded experiment. Its notes name every trial that failed, has
    damaged result files, is left out (and why), or has not finished."""
    results, notes = distinct_seeds(trial_results(experiment))
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
    table = comparison_table(summarize_variants(results), notes, primary_metric(experiment))
    if experiment.meta is not None and experiment.meta.race is not None:
        design, configs = design_of(experiment.meta.race)
        table.race = race_report(design, configs, results)
    return table


def primary_metric(experiment: Experiment) -> str:
    """The metric the experiment's space declared before it ran (SearchSpace.metric: what Tune
    scheduled on and what the verdict decides on); SELECT for an experiment of no known space."""
    from tune_cilp.spaces import get_space  # the registry imports every space module: lazily

    name = experiment.meta.space if experiment.meta is not None else None
    try:
        metric = get_space(name).metric if name else SELECT
    except UserError:
        return SELECT
    return metric if metric in SCENE_METRICS else SELECT


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


def render(headers: list[str], rows: list[list[str]], fmt: str) -> str:
    """One table in tabulate's `fmt`, two-line cells joined where the format cannot draw them;
    disable_numparse keeps our number formats ("0.500", not tabulate's "0.5")."""
    (headers,) = for_format([headers], fmt)
    return tabulate(
        for_format(rows, fmt), headers=headers, tablefmt=check_format(fmt), disable_numparse=True
    )


def format_table(table: ComparisonTable, fmt: str = "grid") -> str:
    """The table in a tabulate format, then the footer notes and the verdict line; with no
    variant to show, a line saying so and the notes that say why."""
    if not table.variants:
        # The notes say why: not reported yet, failed, damaged result files.
        text, notes = "no trial has a validation loss to show yet", table.notes
    elif table.ranking is not None:
        text = "\n\n".join(
            f"{title}\n{render(headers, rows, fmt)}"
            for title, headers, rows in ranking_tables(table.ranking)
        )
        # The table's verdict: the ranking's, with the majority-class caution where it applies.
        *legend, _ = ranking_notes(table.ranking)
        notes = [*legend, *table.notes, "Verdict: " + table.verdict]
    else:
        text = render(table.headers, table.rows(), fmt)
        notes = [FOOTER, *table.notes] + (["Verdict: " + table.verdict] if table.verdict else [])
    lines = [text, *_wrapped(notes)]
    if table.race is not None:
        lines.append("\nThe race, look by look")
        if table.race.state.looks:
            lines.append(render(RACE_HEADERS, table.race.rows(), fmt))
        lines += _wrapped(race_notes(table.race))
    return "\n".join(lines)


def _wrapped(notes: list[str]) -> list[str]:
    # Wrapped at spaces only: a variant name such as "concat-stride" stays in one piece.
    return [textwrap.fill(n, 100, break_on_hyphens=False) for n in notes]


def to_records(table: ComparisonTable) -> list[dict[str, Any]]:
    """One flat dict per metric: per-variant mean/std/n (and, for scene metrics, the value and
    95 % interval from the per-scene scores) and, for two variants, Welch's difference and the
    paired bootstrap's (what --csv writes for a two-variant table and --json's "rows" hold)."""
    rows = row_metrics()
    records = metric_records(rows, table.variants, table.comparisons)
    for m, rec in zip(rows, records, strict=True):
        if table.scenes is not None and m.key in SCENE_METRICS:
            for v in table.variants:
                e = table.scenes.variants[v.name].estimates[m.key]
                rec.update({f"{v.name} value": e.value, f"{v.name} low": e.low,
                            f"{v.name} high": e.high})  # fmt: skip
        if table.paired:
            p = table.paired.get(m.key)
            rec.update(
                {
                    "paired_difference": p.difference if p else math.nan,
                    "paired_low": p.low if p else math.nan,
                    "paired_high": p.high if p else math.nan,
                    "p_paired": p.p_value if p else math.nan,
                    "primary": m.key == table.primary,
                }
            )
        if table.mcnemar is not None:
            rec["p_mcnemar"] = table.mcnemar[0] if m.key == "val_accuracy" else math.nan
            rec["p_delong"] = table.delong if m.key == "val_roc_auc" else math.nan
    return records


def ranking_records(ranking: Ranking) -> list[dict[str, Any]]:
    """One flat dict per ranked variant with every column of the three ranking tables,
    unformatted (what --csv writes for more than two variants and --json's "ranking" holds)."""
    records = []
    for place, r in enumerate(ranking.rows, start=1):
        rec: dict[str, Any] = {"rank": place, "name": r.variant.name}
        rec["seeds"] = len(r.variant.trials)
        for k in quality_metrics():
            e = r.quality[k]
            rec.update({k: e.value, f"{k} low": e.low, f"{k} high": e.high})
        for k in vs_best_metrics(ranking.metric):
            p = r.paired.get(k)
            rec.update(
                {
                    f"Δ {k}": p.difference if p else math.nan,
                    f"Δ {k} low": p.low if p else math.nan,
                    f"Δ {k} high": p.high if p else math.nan,
                    f"p {k}": p.p_value if p else math.nan,
                }
            )
        improvement = r.improvement
        rec.update(
            {
                "p_all_pairs_holm": r.p_holm,
                "p_welch": r.welch.p_value if r.welch else math.nan,
                "p_mcnemar": r.mcnemar[0] if r.mcnemar else math.nan,
                f"p_{ranking.second_test.lower() or 'second'}_holm": r.p_second_holm,
                "p_first": r.p_best,
                "p_best_beats_it": improvement.value if improvement else math.nan,
                "p_best_beats_it low": improvement.low if improvement else math.nan,
                "p_best_beats_it high": improvement.high if improvement else math.nan,
                "in_confidence_set": r.variant.name in ranking.confidence_set,
            }
        )
        for k in COST:
            s = r.variant.metrics[k]
            rec.update({f"{k} mean": s.mean, f"{k} min": s.min, f"{k} max": s.max})
        records.append(rec)
    return records


def metric_records(
    metrics: Sequence[Metric],
    columns: Sequence[VariantSummary],
    comparisons: dict[str, Comparison],
) -> list[dict[str, Any]]:
    """The numbers behind `metric_rows`, unformatted: per metric its label and key, per column
    "<name> mean", "<name> std" and "<name> n", and with comparisons the difference, its CI
    and Welch's p (what --csv writes and --json's "rows" hold, for every kind of table)."""
    records = []
    for m in metrics:
        rec: dict[str, Any] = {"metric": m.label, "key": m.key}
        for v in columns:
            s = v.metrics[m.key]
            rec.update({f"{v.name} mean": s.mean, f"{v.name} std": s.std, f"{v.name} n": s.n,
                        f"{v.name} min": s.min, f"{v.name} max": s.max})  # fmt: skip
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
            "test": (PAIRED_TEST if table.scenes is not None else WELCH_TEST)
            if table.variants
            else None,
            "intervals_cover": None if table.scenes is None else table.scenes.coverage,
            "scores": None if table.scenes is None else table.scenes.split,
            "verdict_scores": None if table.scenes is None else table.scenes.verdict_scores,
            "primary_metric": table.primary,
            "one_class": None if table.one_class is None else table.one_class.to_dict(),
            "ranking": None if table.ranking is None else ranking_records(table.ranking),
            "race": None if table.race is None else table.race.to_dict(),
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
    with output(path, "output", "w", encoding="utf-8", newline="") as f:
        f.write(text)


def write_csv(table: ComparisonTable, path: str) -> None:
    """The table's numbers (unformatted) as CSV: one row per metric, or with a ranking one row
    per variant with every column of its tables."""
    records = to_records(table) if table.ranking is None else ranking_records(table.ranking)
    write_records_csv(records, path)


def write_records_csv(records: Sequence[dict[str, Any]], path: str) -> None:
    """`records` (flat dicts, e.g. `metric_records`; a key some lack is an empty cell there)
    as CSV, written atomically."""
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in records for k in r))  # first-seen order
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(records)
    _write_atomic(path, buf.getvalue())


def write_json(table: ComparisonTable, path: str, experiment_path: str = "") -> None:
    """Everything behind the table as JSON (see to_json_dict)."""
    write_json_data(to_json_dict(table, experiment_path), path)


def write_json_data(data: dict[str, Any], path: str) -> None:
    """`data` (already JSON-ready: see `nan_to_none`) as indented JSON, written atomically."""
    _write_atomic(path, json.dumps(data, indent=2) + "\n")
