"""The CILP table in the seed notebook's shape: one column per chain configuration, a
Difference column and verdict for two, and the reference models (the single-modality baselines
and the best fusion model) when the experiment trained them; the same numbers as CSV or JSON
(with each seed's chosen trial per stage), and each stage's validation curves as PNG.

The RGB-only classifier's rows are the fusion table's (analysis/table.py): from its stored
per-scene scores, percentile bootstrap intervals over validation scenes (and seeds), paired
differences, McNemar with one seed, the majority-class note. Every other row is mean (min–max)
across seeds; rows of a stage the compared chains share say "shared" in the Difference column
(one trial per seed, not two samples). docs/CILP.md, docs/STATISTICS.md.

import analysis.cilp_table as ct
print(ct.cilp_report("~/ray_results/cilp"))
"""

from __future__ import annotations

import math
import os
import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any

from analysis.cells import estimate_cell, p_cell, paired_cell, spread_cell
from analysis.inference import Interval
from analysis.one_class import UNDEFINED, tagged
from analysis.stats import (
    Comparison,
    TrialResult,
    VariantSummary,
    compare,
    summarize,
    summarize_trial,
    summarize_variants,
    trial_results,
    verdict,
)
from analysis.table import (
    PAIRED_TEST,
    WELCH_TEST,
    ComparisonTable,
    check_format,
    comparison_table,
    difference_cell,
    metric_records,
    nan_to_none,
    render,
    to_json_dict,
    trial_dict,
    variant_dict,
    write_json_data,
    write_records_csv,
)
from tune_cilp.cilp.cilp_space import CilpSpace
from tune_cilp.cilp.probes import PROBE_SCORES, probe_key
from tune_cilp.cilp.select import Link, by_trial_dir, select
from tune_cilp.cilp.stages import (
    BASELINES,
    TRAINING_TIME,
    cilp_rows,
    classifier_stage,
    get_stage,
    stage_names,
)
from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import SCENE_METRICS, SELECT, TRIAL_METRICS, Metric
from tune_cilp.core.stored import absolute, is_dir
from tune_cilp.experiment.identity import read_meta
from tune_cilp.fusion.variants import fusion_variants
from tune_cilp.results import TrialRecord, kept_row, load_experiment

# The reference models' rows: the registry's metrics marked reference_row (tune_cilp.core.metrics
# .CLASSIFICATION), then the seed's cost rows.
REFERENCE_ROWS: tuple[Metric, ...] = (
    *(m for m in TRIAL_METRICS.values() if m.reference_row),
    TRIAL_METRICS["params_m"],
    TRIAL_METRICS["training_time_s"],
)
# A stage's per-epoch bookkeeping, left out of its best-epoch numbers (the best epoch is its own
# field; best_val_loss equals val_loss there).
_NOT_STAGE_RESULTS = ("epoch", "best_epoch", "best_val_loss")
_COUNTS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def footer() -> str:
    """What the table's cells are (printed under it)."""
    n = len(stage_names())
    return (
        "Each stage at the epoch whose weights it kept (its best by validation loss), for the "
        "trial each chain used (per seed, the best of its stage); Retrieval top-1 over the whole "
        "validation set; Linear probe: logistic regression on that stage's frozen training "
        "embeddings, scored on validation (spheres positive); Parameters: the RGB-only "
        "classifier (image embedder, projector, head); Training Time: the "
        f"{_COUNTS[n] if n < len(_COUNTS) else n} stages' epochs summed. Cells: classifier rows "
        "value [95% interval] from its per-scene scores where stored; the rest mean (min–max) "
        "across seeds."
    )


def classifier_keys() -> dict[str, str]:
    """The classifier stage's CILP rows -> its trials' metrics (the per-scene scores resample
    these): the stage's rows of SCENE_METRICS, its validation loss first."""
    stage = classifier_stage()
    rows = stage.rows if stage is not None else ()
    return {r.metric.key: r.source for r in rows if r.source in SCENE_METRICS}


def registry_key(key: str) -> str | None:
    """The registry metric (tune_cilp.core.metrics.CLASSIFICATION) a CILP row `key` measures on
    the validation scenes: a classifier row's, or a linear probe's score (a probe scores
    `score` by the registry's `val_<score>`: tune_cilp/cilp/probes.py); None for any other
    row."""
    if key in (keys := classifier_keys()):
        return keys[key]
    for name in stage_names():
        for probe in get_stage(name).probes:
            for score in PROBE_SCORES:
                if probe_key(probe.what, score) == key and f"val_{score}" in SCENE_METRICS:
                    return f"val_{score}"
    return None


def verdict_metric() -> str:
    """The row a two-chain verdict compares: the chain's end product's validation loss (the
    classifier stage's, else the last stage's)."""
    stage = classifier_stage() or get_stage(stage_names()[-1])
    return next(r.metric.key for r in stage.rows if r.source == SELECT)


@dataclass
class CilpTable:
    chains: list[VariantSummary]  # one per configuration; a "trial" = one seed's chain
    comparisons: dict[str, Comparison] = field(default_factory=dict)
    references: list[VariantSummary] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verdict: str = ""
    # Per stage, one summary per chain (same order as `chains`) whose trials are the stage's
    # trials that chain used, one per seed, with their histories (for the curves).
    stages: dict[str, list[VariantSummary]] = field(default_factory=dict)
    path: str = ""  # the experiment directory, absolute
    # The classifier stage's trials as the fusion table sees them (scene intervals, paired
    # tests, majority-class note), one variant per chain; None before the stage has results.
    classifier: ComparisonTable | None = None
    shared: tuple[str, ...] = ()  # stages every compared chain shares (before the compared one)

    @property
    def headers(self) -> list[str]:
        names = [f"{c.name}\n({len(c.trials)} seed{'s' * (len(c.trials) != 1)})" for c in
                 self.chains]  # fmt: skip
        return ["Metric", *names, *(["Difference\n[95% CI]"] if len(self.chains) == 2 else [])]

    def rows(self) -> list[list[str]]:
        """Formatted cells, one row per entry of cilp_rows(); a row a one-class validation split
        leaves undefined or one-sided is tagged (analysis/one_class.py)."""
        out = []
        for m in cilp_rows():
            row = [tagged(m.label, [self.mark(m.key)]), *(self._cell(c, m) for c in self.chains)]
            if len(self.chains) == 2:
                row.append(self._difference(m))
            out.append(row)
        return out

    def mark(self, key: str) -> str:
        """The one-class tag of CILP row (or registry metric) `key`: "undefined", "cubes only"
        or ""; the classifier's validation scenes say whether they are of one class."""
        one = self.classifier.one_class if self.classifier is not None else None
        source = key if key in SCENE_METRICS else registry_key(key)
        return one.mark(source) if one is not None and source is not None else ""

    def estimate(self, chain: str, key: str) -> Interval | None:
        """A classifier row's interval for one chain (analysis.inference.metric_interval); None
        without scene scores."""
        scenes = self.classifier.scenes if self.classifier is not None else None
        keys = classifier_keys()
        if scenes is None or key not in keys or chain not in scenes.variants:
            return None
        return scenes.variants[chain].estimates[keys[key]]

    def paired(self, key: str) -> Any:
        """A classifier row's difference on the same scenes (second chain - first), if any."""
        keys = classifier_keys()
        if self.classifier is None or key not in keys:
            return None
        return self.classifier.paired.get(keys[key])

    def _cell(self, chain: VariantSummary, m: Metric) -> str:
        if self.mark(m.key) == UNDEFINED:  # e.g. F1 of cubes only: 0 by convention, no number
            return "n/a"
        estimate = self.estimate(chain.name, m.key)
        if estimate is not None:
            return estimate_cell(estimate, m.fmt, TRIAL_METRICS[classifier_keys()[m.key]].bounds)
        return spread_cell(chain.values(m.key), m.fmt)

    def _difference(self, m: Metric) -> str:
        if row_stage(m.key) in self.shared:
            return "shared"
        if self.mark(m.key) == UNDEFINED:
            return "n/a"
        paired = self.paired(m.key)
        if paired is not None:
            p = p_cell(paired.p_value)
            return f"{paired_cell(paired, m.fmt)}\np{'' if p.startswith('<') else '='}{p}"
        return difference_cell(self.comparisons[m.key], m.fmt)


def row_stage(key: str) -> str | None:
    """The stage a CILP row's number comes from (its rows and probes); None for the whole
    chain's (the training time)."""
    for name in stage_names():
        stage = get_stage(name)
        if key in {r.metric.key for r in stage.rows} | {m.key for m in stage.probe_rows}:
            return name
    return None


def is_cilp_experiment(path: str) -> bool:
    """Whether ``path`` holds a CILP chain (its stage directories, or a CILP space's metadata)."""
    path = absolute(str(path))
    if is_dir(f"{path.rstrip('/')}/{stage_names()[0]}"):
        return True
    meta = read_meta(path) if is_dir(path) else None
    return meta is not None and meta.space in _cilp_space_names()


def _cilp_space_names() -> set[str]:
    from tune_cilp.spaces import list_spaces

    return {s.name for s in list_spaces() if isinstance(s, CilpSpace)}


def _chain_metrics(chosen: dict[str, TrialRecord]) -> dict[str, float]:
    """One seed's chain reduced to the cilp_rows() metrics (NaN for a stage not reached)."""
    nan = math.nan
    out = {m.key: nan for m in cilp_rows()}
    stages = [get_stage(name) for name in stage_names()]
    for stage in stages:
        trial = chosen.get(stage.name)
        if trial is None:
            continue
        if row := kept_row(trial.history):
            out.update({r.metric.key: r.value(row) for r in stage.rows})
        if trial.history:  # a stage's probes are on its last row (made on the kept weights)
            last = trial.history[-1]
            out.update({m.key: float(last.get(m.key, nan)) for m in stage.probe_rows})
    if all(stage.name in chosen for stage in stages):
        out[TRAINING_TIME.key] = sum(
            r.get("epoch_time_s", nan) for s in stages for r in chosen[s.name].history
        )
    return out


def cilp_table(experiment_path: str) -> CilpTable:
    """The CILP table of the experiment directory (finished or not)."""
    path = absolute(str(experiment_path))  # a local directory or a storage URI
    if not is_dir(path):
        raise UserError(f"experiment path {path}: no such directory")
    meta = read_meta(path)
    space = None
    if meta is not None and meta.space in _cilp_space_names():
        from tune_cilp.spaces import get_space

        space = get_space(meta.space)
    compared = space.compare if space is not None else None
    label = space.name if space is not None else os.path.basename(path)
    notes: list[str] = []
    # Per trial directory chosen at the last stage reached, its chain's trial at every stage
    # so far: a stage before the compared one is shared by every compared chain of its seed.
    lineage: dict[str, dict[str, TrialRecord]] = {}
    chosen: dict[tuple[str, int], dict[str, TrialRecord]] = {}
    upstream: dict[str, Link] = {}
    for stage in stage_names():
        stage_dir = os.path.join(path, stage)
        if not is_dir(stage_dir):
            notes.append(f"stage {stage} has not started.")
            break
        trials = load_experiment(stage_dir).trials
        by_id = {t.trial_id: t for t in trials}
        links = select(stage, trials, compared, label, upstream)
        if not links:
            break
        lineage = {
            link.trial_dir: {**lineage.get(link.upstream_dir, {}), stage: by_id[link.trial_id]}
            for link in links
        }
        chosen = {(link.label, link.seed): lineage[link.trial_dir] for link in links}
        unfinished = [t for t in trials if t.status != "TERMINATED"]
        if unfinished:
            notes.append(f"stage {stage}: {len(unfinished)} trial(s) not finished: partial.")
        upstream = by_trial_dir(links)
    chains = _summaries(chosen)
    table = CilpTable(chains, notes=notes, references=_references(path), path=path)
    table.stages = _stage_summaries(chosen, [c.name for c in chains])
    names = stage_names()
    if compared is not None and compared.stage in names:
        table.shared = names[: names.index(compared.stage)]
    classifiers = _classifier_variants(chosen, [c.name for c in chains])
    if classifiers:
        # Chains that share their upstream trials per seed pair by seed: seed 51's classifiers
        # of both chains stand on the same contrastive (and projector) weights.
        table.classifier = comparison_table(classifiers, paired_seeds=bool(table.shared))
        table.notes += classifier_notes(table.classifier)
        ranked = table.classifier.ranking is not None and table.classifier.scenes is not None
        if ranked:  # a ranking says what its intervals cover in its own notes, unprinted here
            table.notes.append(f"RGB-only classifier: {table.classifier.scenes.note()}")
    if table.classifier is not None and len(chains) > 2:  # ranked like fusion variants
        table.verdict = f"RGB-only classifier: {table.classifier.verdict}"
    if len(chains) == 2:
        a, b = chains
        table.comparisons = {m.key: compare(a.values(m.key), b.values(m.key)) for m in cilp_rows()}
        if table.classifier is not None and table.classifier.paired:
            table.verdict = f"RGB-only classifier: {table.classifier.verdict}"
        else:
            table.verdict = verdict(a, b, verdict_metric())
            if table.classifier is not None and table.classifier.one_class is not None:
                table.verdict += table.classifier.one_class.caution(verdict_metric())
        table.notes.append(
            f"Difference = {b.name} - {a.name}; classifier rows with per-scene scores: the "
            "paired bootstrap (above); the rest: [95% CI of the difference] and two-sided p from "
            "Welch's t-test across seeds (shown only when both sides have 2+ seeds)"
            + (f"; shared: the same {' and '.join(table.shared)} trials" if table.shared else "")
            + "."
        )
    elif len(chains) > 2 and table.shared:  # no Difference column to say it in
        rows = " and ".join(s.capitalize() for s in table.shared)
        table.notes.append(
            f"{rows} rows (and their probes): shared, the same trials in every chain (one per "
            "seed), so they are equal across the columns and not compared."
        )
    return table


def classifier_notes(classifier: ComparisonTable) -> list[str]:
    """The classifier table's notes, each said of the RGB-only classifier; but a one-class note
    is about the validation split every stage, probe and reference model shares: unprefixed."""
    one = classifier.one_class.note() if classifier.one_class is not None else None
    return [n if n == one else f"RGB-only classifier: {n}" for n in classifier.notes]


def _classifier_variants(
    chosen: dict[tuple[str, int], dict[str, TrialRecord]], labels: list[str]
) -> list[VariantSummary]:
    """The classifier stage's chosen trials, one variant per chain (named by it), reduced like
    fusion trials (at the epoch each kept, with its checkpoint for the stored scores)."""
    classifier = classifier_stage()
    if classifier is None:
        return []
    out = []
    for label in labels:
        results = [
            r
            for (name, seed), stages in sorted(chosen.items())
            if name == label and (t := stages.get(classifier.name)) is not None
            if (
                r := summarize_trial(
                    t.trial_id, {**t.config, "seed": seed}, t.history, t.status, t.checkpoint
                )
            )
            is not None  # fmt: skip
        ]
        if results:
            metrics = {k: summarize([r.metrics[k] for r in results]) for k in results[0].metrics}
            best = min(results, key=lambda r: r.metrics[SELECT])
            out.append(VariantSummary(label, {"chain": label}, results, metrics, best))
    return out


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
        metrics = {m.key: summarize([r.metrics[m.key] for r in results]) for m in cilp_rows()}
        out.append(VariantSummary(label, {"chain": label}, results, metrics, results[0]))
    return out


def _stage_result(stage: str, seed: int, trial: TrialRecord) -> TrialResult:
    """One chosen trial of a stage at its best epoch by validation loss, with the stage's own
    numbers there (the stage registry's epoch_metrics) and its history."""
    row = kept_row(trial.history) or {}
    keys = [m.key for m in get_stage(stage).epoch_metrics if m.key not in _NOT_STAGE_RESULTS]
    return TrialResult(
        trial_id=trial.trial_id,
        config={**trial.config, "seed": seed},
        status=trial.status,
        epochs=len(trial.history),
        best_epoch=int(row.get("epoch", 0)),
        metrics={k: float(row.get(k, math.nan)) for k in keys},
        history=[dict(r) for r in trial.history],
    )


def _stage_summaries(
    chosen: dict[tuple[str, int], dict[str, TrialRecord]], labels: list[str]
) -> dict[str, list[VariantSummary]]:
    """Per stage reached, per chain (in `labels` order), the stage trials it used (by seed)."""
    out: dict[str, list[VariantSummary]] = {}
    for stage in stage_names():
        columns = []
        for label in labels:
            results = [
                _stage_result(stage, seed, stages[stage])
                for (name, seed), stages in sorted(chosen.items())
                if name == label and stage in stages
            ]
            if not results:
                continue
            metrics = {k: summarize([r.metrics[k] for r in results]) for k in results[0].metrics}
            best = min(results, key=lambda r: r.metrics["val_loss"])
            columns.append(VariantSummary(label, {"chain": label}, results, metrics, best))
        if columns:
            out[stage] = columns
    return out


def _references(path: str) -> list[VariantSummary]:
    """The baselines' variants, and of the fusion variants among them the best by val_loss."""
    stage_dir = os.path.join(path, BASELINES)
    if not is_dir(stage_dir):
        return []
    variants = summarize_variants(trial_results(load_experiment(stage_dir)))
    single = [v for v in variants if v.config.get("variant") not in fusion_variants()]
    fusion = [v for v in variants if v.config.get("variant") in fusion_variants()]
    best = min(fusion, key=lambda v: v.metrics["val_loss"].mean, default=None)
    return single + ([best] if best is not None else [])


def format_cilp_table(table: CilpTable, fmt: str = "grid") -> str:
    """The table, the reference models' table (if any), the notes and the verdict, as text."""
    check_format(fmt)  # also with nothing to show: a typo fails the same either way
    if not table.chains:
        return "\n".join(["no CILP chain has results to show yet", *table.notes])
    parts = [render(table.headers, table.rows(), fmt)]
    if table.references:
        rows = [
            [v.name, *(_reference_cell(table, v, m) for m in REFERENCE_ROWS)]
            for v in table.references
        ]
        labels = [
            "Reference model",
            *(tagged("\n".join(textwrap.wrap(m.label, 12)), [table.mark(m.key)])
              for m in REFERENCE_ROWS),
        ]  # fmt: skip
        parts.append(render(labels, rows, fmt))
    notes = [footer(), *table.notes] + (["Verdict: " + table.verdict] if table.verdict else [])
    return "\n".join([*parts, *(textwrap.fill(n, 100, break_on_hyphens=False) for n in notes)])


def _reference_cell(table: CilpTable, v: VariantSummary, m: Metric) -> str:
    """A reference model's metric across its seeds; n/a where the (shared) validation split
    leaves it undefined."""
    return "n/a" if table.mark(m.key) == UNDEFINED else spread_cell(v.values(m.key), m.fmt)


def cilp_report(experiment_path: str, fmt: str = "grid") -> str:
    """The CILP table of the experiment at ``experiment_path`` as text in tabulate's ``fmt``."""
    return format_cilp_table(cilp_table(experiment_path), fmt)


def to_cilp_records(table: CilpTable) -> list[dict[str, Any]]:
    """One flat dict per cilp_rows() metric: per chain mean/std/n/min/max across seeds and,
    for a classifier row with per-scene scores, the "<chain> value/low/high" its cell shows; for
    two chains the difference with Welch's CI and p, and the one on the same scenes
    ("paired_difference/low/high/p") where there is one."""
    rows = cilp_rows()
    records = metric_records(rows, table.chains, table.comparisons)
    for record, m in zip(records, rows, strict=True):
        for chain in table.chains:
            if (e := table.estimate(chain.name, m.key)) is not None:
                record.update({f"{chain.name} value": e.value, f"{chain.name} low": e.low,
                               f"{chain.name} high": e.high})  # fmt: skip
        if (p := table.paired(m.key)) is not None:
            record.update({"paired_difference": p.difference, "paired_low": p.low,
                           "paired_high": p.high, "paired_p": p.p_value})  # fmt: skip
        if row_stage(m.key) in table.shared:
            record["shared"] = True
    return records


def to_cilp_json_dict(table: CilpTable) -> dict[str, Any]:
    """Everything behind the CILP table, JSON-ready (NaN becomes null): the rows, per chain its
    summaries and per seed the chain's numbers and, per stage, the trial it used with that
    trial's best-epoch numbers; the reference models as the fusion JSON's variants."""
    chains = []
    for chain in table.chains:
        by_stage = {
            stage: {t.config["seed"]: t for v in columns if v.name == chain.name for t in v.trials}
            for stage, columns in table.stages.items()
        }
        seeds = [
            {
                "seed": t.config["seed"],
                "metrics": t.metrics,
                "stages": {
                    stage: trial_dict(results[t.config["seed"]])
                    for stage, results in by_stage.items()
                    if t.config["seed"] in results
                },
            }
            for t in chain.trials
        ]
        chains.append(
            {
                "name": chain.name,
                "config": chain.config,
                "metrics": {m: asdict(s) for m, s in chain.metrics.items()},
                "seeds": seeds,
            }
        )
    return nan_to_none(
        {
            "experiment": table.path,
            "kind": "cilp",
            "rows": to_cilp_records(table),
            "chains": chains,
            "references": [variant_dict(v) for v in table.references],
            "comparison": {m: asdict(c) for m, c in table.comparisons.items()},
            "test": WELCH_TEST if table.comparisons else None,
            "classifier_test": PAIRED_TEST
            if table.classifier and table.classifier.paired
            else None,
            "classifier": None if table.classifier is None else to_json_dict(table.classifier),
            "shared_stages": list(table.shared),
            "verdict": table.verdict or None,
            "verdict_metric": verdict_metric() if table.verdict else None,
            "notes": table.notes,
        }
    )


def write_cilp_csv(table: CilpTable, path: str) -> None:
    """The CILP table's numbers (unformatted) as CSV, one row per cilp_rows() metric."""
    write_records_csv(to_cilp_records(table), path)


def write_cilp_json(table: CilpTable, path: str) -> None:
    """Everything behind the CILP table as JSON (see to_cilp_json_dict)."""
    write_json_data(to_cilp_json_dict(table), path)


def write_cilp_plots(table: CilpTable, out_dir: str) -> list[str]:
    """One PNG per stage reached, ``cilp_<stage>.png`` in `out_dir` (created if missing): its
    validation curves (its Stage's curves) per chain, mean across seeds with a min-max band;
    paths."""
    from analysis.plots import output_dir, plot_curves, save_figure  # here: matplotlib is slow

    out_dir = output_dir(out_dir)
    paths = []
    for stage, columns in table.stages.items():
        spec = get_stage(stage)
        metrics: dict[str, Metric] = {m.key: m for m in spec.epoch_metrics}
        curves = [metrics[k] for k in spec.curves]
        title = (
            f"CILP {stage} stage (the trial each chain used): mean across seeds; band = min to max"
        )
        paths.append(save_figure(plot_curves(columns, curves, title), out_dir, f"cilp_{stage}.png"))
    return paths


__all__: list[Any] = [
    "CilpTable",
    "cilp_report",
    "cilp_table",
    "format_cilp_table",
    "is_cilp_experiment",
    "to_cilp_json_dict",
    "to_cilp_records",
    "write_cilp_csv",
    "write_cilp_json",
    "write_cilp_plots",
]
