"""The CILP table in the seed notebook's shape: one column per chain configuration (mean ± 95 %
CI across seeds), a Difference column and verdict for two, and the reference models (the
single-modality baselines and the best fusion model) when the experiment trained them.

import analysis.cilp_table as ct
print(ct.cilp_report("~/ray_results/cilp"))
"""

from __future__ import annotations

import math
import os
import textwrap
from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

from analysis.ranking import half_width
from analysis.stats import (
    Comparison,
    Summary,
    TrialResult,
    VariantSummary,
    best_epoch,
    compare,
    summarize,
    summarize_variants,
    trial_results,
    verdict,
)
from analysis.table import fmt_value, metric_rows
from tune_cilp.cilp.chain import BASELINES
from tune_cilp.cilp.select import Link, by_trial_dir, select
from tune_cilp.cilp.space import CilpSpace
from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import CILP_ROWS, CILP_STAGES, TRIAL_METRICS
from tune_cilp.experiment.identity import read_meta
from tune_cilp.models.variants import fusion_variants
from tune_cilp.results import TrialRecord, load_experiment

VERDICT_METRIC = "classifier_val_loss"  # the chain's end product: the RGB-only classifier
REFERENCE_ROWS = tuple(
    TRIAL_METRICS[k]
    for k in (
        "val_loss",
        "val_accuracy",
        "val_balanced_accuracy",
        "val_f1",
        "params_m",
        "training_time_s",
    )
)
FOOTER = (
    "Each stage at its best epoch by validation loss, for the trial each chain used (per seed, "
    "the best of its stage); Retrieval top-1 over the whole validation set; Parameters: the "
    "RGB-only classifier (image embedder, projector, head); Training Time: the three stages' "
    "epochs summed. Cells: mean ± 95% CI half-width (number of seeds)."
)


@dataclass
class CilpTable:
    chains: list[VariantSummary]  # one per configuration; a "trial" = one seed's chain
    comparisons: dict[str, Comparison] = field(default_factory=dict)
    references: list[VariantSummary] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verdict: str = ""

    def rows(self) -> list[list[str]]:
        return metric_rows(CILP_ROWS, self.chains, self.comparisons, _cell)


def _cell(s: Summary, spec: str) -> str:
    """mean ± 95 % CI half-width (n), across the chains' seeds."""
    if s.n == 0 or math.isnan(s.mean):
        return "n/a"
    if s.n == 1:
        return fmt_value(s.mean, spec)
    return f"{fmt_value(s.mean, spec)} ± {fmt_value(half_width(s.std, s.n), spec)} ({s.n})"


def is_cilp_experiment(path: str) -> bool:
    """Whether ``path`` holds a CILP chain (its stage directories, or a CILP space's metadata)."""
    path = os.path.abspath(os.path.expanduser(str(path)))
    if os.path.isdir(os.path.join(path, CILP_STAGES[0])):
        return True
    meta = read_meta(path) if os.path.isdir(path) else None
    return meta is not None and meta.space in _cilp_space_names()


def _cilp_space_names() -> set[str]:
    from tune_cilp.spaces import list_spaces

    return {s.name for s in list_spaces() if isinstance(s, CilpSpace)}


def _chain_metrics(chosen: dict[str, TrialRecord]) -> dict[str, float]:
    """One seed's chain reduced to the CILP_ROWS metrics (NaN for a stage not reached)."""
    nan = math.nan
    out = {m.key: nan for m in CILP_ROWS}
    c, p, k = (chosen.get(s) for s in CILP_STAGES)
    if c is not None and (row := best_epoch(c.history)):
        out["contrastive_val_loss"] = row["val_loss"]
        out["top1_rgb_to_lidar"] = row.get("val_top1_rgb_to_lidar", nan)
        out["top1_lidar_to_rgb"] = row.get("val_top1_lidar_to_rgb", nan)
    if p is not None and (row := best_epoch(p.history)):
        out["projector_val_mse"] = row["val_loss"]
    if k is not None and (row := best_epoch(k.history)):
        out["classifier_val_loss"] = row["val_loss"]
        for key in ("val_accuracy", "val_balanced_accuracy", "val_f1"):
            out[key] = row.get(key, nan)
        out["params_m"] = row.get("num_parameters", nan) / 1e6
    if c is not None and p is not None and k is not None:
        out["training_time_s"] = sum(
            r.get("epoch_time_s", nan) for t in (c, p, k) for r in t.history
        )
    return out


def cilp_table(experiment_path: str) -> CilpTable:
    """The CILP table of the experiment directory (finished or not)."""
    path = os.path.abspath(os.path.expanduser(str(experiment_path)))
    if not os.path.isdir(path):
        raise UserError(f"experiment path {path}: no such directory")
    meta = read_meta(path)
    space = None
    if meta is not None and meta.space in _cilp_space_names():
        from tune_cilp.spaces import get_space

        space = get_space(meta.space)
    compare_key = space.compare[0] if space is not None and space.compare else None
    label = space.name if space is not None else os.path.basename(path)
    notes: list[str] = []
    chosen: dict[tuple[str, int], dict[str, TrialRecord]] = {}
    upstream: dict[str, Link] = {}
    for stage in CILP_STAGES:
        stage_dir = os.path.join(path, stage)
        if not os.path.isdir(stage_dir):
            notes.append(f"stage {stage} has not started.")
            break
        trials = load_experiment(stage_dir).trials
        by_id = {t.trial_id: t for t in trials}
        links = select(stage, trials, compare_key, label, upstream)
        for link in links:
            chosen.setdefault((link.label, link.seed), {})[stage] = by_id[link.trial_id]
        unfinished = [t for t in trials if t.status != "TERMINATED"]
        if unfinished:
            notes.append(f"stage {stage}: {len(unfinished)} trial(s) not finished: partial.")
        upstream = by_trial_dir(links)
    chains = _summaries(chosen)
    table = CilpTable(chains, notes=notes, references=_references(path))
    if len(chains) == 2:
        a, b = chains
        table.comparisons = {m.key: compare(a.values(m.key), b.values(m.key)) for m in CILP_ROWS}
        table.verdict = verdict(a, b, VERDICT_METRIC)
        table.notes.append(
            f"Difference = {b.name} - {a.name}; [95% CI of the difference] and two-sided p "
            "from Welch's t-test across seeds (shown only when both sides have 2+ seeds)."
        )
    return table


def _summaries(chosen: dict[tuple[str, int], dict[str, TrialRecord]]) -> list[VariantSummary]:
    groups: dict[str, list[TrialResult]] = {}
    for (label, seed), stages in sorted(chosen.items()):
        first = next(iter(stages.values()))
        groups.setdefault(label, []).append(
            TrialResult(
                trial_id=first.trial_id,
                config={"seed": seed, "chain": label},
                status=first.status,
                epochs=sum(len(t.history) for t in stages.values()),
                best_epoch=0,
                metrics=_chain_metrics(stages),
            )
        )
    out = []
    for label, results in groups.items():
        metrics = {m.key: summarize([r.metrics[m.key] for r in results]) for m in CILP_ROWS}
        out.append(VariantSummary(label, {"chain": label}, results, metrics, results[0]))
    return out


def _references(path: str) -> list[VariantSummary]:
    """The baselines' variants, and of the fusion variants among them the best by val_loss."""
    stage_dir = os.path.join(path, BASELINES)
    if not os.path.isdir(stage_dir):
        return []
    variants = summarize_variants(trial_results(load_experiment(stage_dir)))
    single = [v for v in variants if v.config.get("variant") not in fusion_variants()]
    fusion = [v for v in variants if v.config.get("variant") in fusion_variants()]
    best = min(fusion, key=lambda v: v.metrics["val_loss"].mean, default=None)
    return single + ([best] if best is not None else [])


def format_cilp_table(table: CilpTable, fmt: str = "grid") -> str:
    """The table, the reference models' table (if any), the notes and the verdict, as text."""
    if not table.chains:
        return "\n".join(["no CILP chain has results to show yet", *table.notes])
    headers = ["Metric", *(c.name for c in table.chains)]
    headers += ["Difference"] if table.comparisons else []
    parts = [tabulate(table.rows(), headers=headers, tablefmt=fmt, disable_numparse=True)]
    if table.references:
        rows = [
            [v.name, *(_cell(v.metrics[m.key], m.fmt) for m in REFERENCE_ROWS)]
            for v in table.references
        ]
        labels = [
            "Reference model",
            "Classifier Validation Loss",
            *(m.label for m in REFERENCE_ROWS[1:]),
        ]
        parts.append(tabulate(rows, headers=labels, tablefmt=fmt, disable_numparse=True))
    notes = [FOOTER, *table.notes] + (["Verdict: " + table.verdict] if table.verdict else [])
    return "\n".join([*parts, *(textwrap.fill(n, 100, break_on_hyphens=False) for n in notes)])


def cilp_report(experiment_path: str, fmt: str = "grid") -> str:
    """The CILP table of the experiment at ``experiment_path`` as text in tabulate's ``fmt``."""
    return format_cilp_table(cilp_table(experiment_path), fmt)


__all__: list[Any] = [
    "CilpTable",
    "cilp_report",
    "cilp_table",
    "format_cilp_table",
    "is_cilp_experiment",
]
