"""PNG plots: per-epoch validation curves per variant (mean, min-max band across seeds), the
final metrics side by side (mean, min-max bars across seeds), the ranking with its intervals, a
race's intervals look by look, and (analysis.scene_plots) the paired differences and the scenes
each variant gets wrong.

Plain matplotlib Figure objects (no pyplot), saved with the Agg canvas: no GUI backend is needed,
and a notebook keeps its own backend.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure  # no pyplot: no GUI backend, and notebooks keep theirs
from matplotlib.ticker import MaxNLocator

from analysis.race_report import RaceReport
from analysis.ranking import Ranking, vs_best_metrics
from analysis.stats import VariantSummary
from analysis.table import ComparisonTable
from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import AT_BEST_EPOCH, EPOCH_METRICS, TRIAL_METRICS, UNIT, Metric
from tune_cilp.core.path_guard import check_output_dir, output

CURVES = tuple(EPOCH_METRICS[key] for key in ("val_loss", "val_accuracy"))  # per epoch


def final_metrics() -> tuple[Metric, ...]:
    """The metrics at the best epoch that are rates in [0, 1] (the final plot's axis)."""
    return tuple(TRIAL_METRICS[k] for k in AT_BEST_EPOCH if TRIAL_METRICS[k].bounds == UNIT)


def epoch_band(variant: VariantSummary, metric: str) -> tuple[np.ndarray, ...]:
    """Epochs and the mean, min and max of `metric` across the variant's seeds at each epoch.

    Seeds still running have fewer epochs: each epoch uses the seeds that reached it.
    """
    per_epoch: dict[int, list[float]] = {}
    for trial in variant.trials:
        for i, row in enumerate(trial.history):
            value = row.get(metric)
            if value is not None and math.isfinite(value):
                per_epoch.setdefault(int(row.get("epoch", i + 1)), []).append(float(value))
    epochs = np.array(sorted(per_epoch))
    values = [per_epoch[e] for e in epochs]
    return (
        epochs,
        np.array([np.mean(v) for v in values]),
        np.array([np.min(v) for v in values]),
        np.array([np.max(v) for v in values]),
    )


def save_figure(fig: Figure, out_dir: str, name: str) -> str:
    """Write `fig` as `out_dir/name` (PNG, atomically); returns the path."""
    path = os.path.join(out_dir, name)
    with output(path, "--plots") as f:
        fig.savefig(f, format="png", dpi=120)
    return path


def colours(n: int) -> list:
    """n distinct colours: matplotlib's default cycle up to 10, tab20 up to 20, then a colormap."""
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    cmap = colormaps["tab20" if n <= 20 else "turbo"]
    return [cmap(i / max(n - 1, 1)) if n > 20 else cmap(i) for i in range(n)]


def plot_curves(
    variants: Sequence[VariantSummary],
    curves: Sequence[Metric] = CURVES,
    title: str = "Mean across seeds; band = min to max",
) -> Figure:
    """One panel per metric of `curves` (by default validation loss and accuracy) per epoch, one
    line (and colour) per variant with a min-max seed band."""
    width = max(11.0, 4.4 * len(curves))  # room for each panel's title ("Retrieval top-1 ...")
    fig = Figure(figsize=(width, 4 if len(variants) <= 4 else 5.5), layout="constrained")
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    palette = colours(len(variants))
    for ax, curve in zip(axes, curves, strict=True):
        # CILP's labels already say "Validation" ("Projector Validation MSE"); don't say it twice
        validation = "validation" in curve.label.lower()
        metric, panel = curve.key, curve.label if validation else f"{curve.label} (validation)"
        for v, colour in zip(variants, palette, strict=True):
            epochs, mean, low, high = epoch_band(v, metric)
            label = f"{v.name} (n={len(v.trials)})"
            ax.plot(epochs, mean, marker="o", ms=3, label=label, color=colour)
            ax.fill_between(epochs, low, high, color=colour, alpha=0.15)
        ax.set(title=panel, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if len(variants) <= 4:
        axes[0].legend(fontsize=8)
    else:  # many variants: one legend below both panels
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=4,
                   fontsize=8)  # fmt: skip
    fig.suptitle(title)
    return fig


def plot_ranking(ranking: Ranking) -> Figure:
    """The primary metric per variant with its 95 % interval (from per-scene scores; none
    without them), best at the top, the best one's interval shaded across the plot."""
    rows = ranking.rows
    fig = Figure(figsize=(8, 1.2 + 0.4 * len(rows)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    estimates = [r.quality[ranking.metric] for r in rows]
    value = np.array([e.value for e in estimates])
    low = np.array([e.low if e.has_interval else e.value for e in estimates])
    high = np.array([e.high if e.has_interval else e.value for e in estimates])
    ax.errorbar(value, y, xerr=[value - low, high - value], fmt="o", capsize=4, color="C0")
    if estimates[0].has_interval:
        ax.axvspan(estimates[0].low, estimates[0].high, alpha=0.15)
    ax.set_yticks(y, [f"{r.variant.name} (n={len(r.variant.trials)})" for r in rows])
    ax.set(xlabel=TRIAL_METRICS[ranking.metric].label)
    ax.grid(alpha=0.3, axis="x")
    cover = "no intervals" if ranking.scenes is None else f"95 % over {ranking.scenes.coverage}"
    fig.suptitle(f"Ranking ({cover}; shaded: the best's interval)")
    return fig


def plot_race(race: RaceReport) -> Figure:
    """Each variant's primary metric and 95 % interval at every look it was compared at
    (seeds and scenes of that look), narrowing as seeds come in; a variant's line ends at the
    look that eliminated it (marked x)."""
    state = race.state
    variants = state.design.variants
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    width = 0.3 / max(len(variants) - 1, 1)
    for i, (name, colour) in enumerate(zip(variants, colours(len(variants)), strict=True)):
        looks = [look for look in state.looks if name in look.compared]
        if not looks:
            continue
        x = np.array([look.number for look in looks]) + (i - (len(variants) - 1) / 2) * width
        est = [race.intervals[look.number][name] for look in looks]
        value = np.array([e.value for e in est])
        low = np.array([e.low if e.has_interval else e.value for e in est])
        high = np.array([e.high if e.has_interval else e.value for e in est])
        ax.errorbar(x, value, yerr=[value - low, high - value], fmt="-o", capsize=3,
                    color=colour, label=name)  # fmt: skip
        out = [j for j, look in enumerate(looks) if name not in look.survivors]
        ax.plot(x[out], value[out], "x", color="black", markersize=10)
    ax.set_xticks([look.number for look in state.looks],
                  [f"{look.number}\n({look.seeds} seeds)" for look in state.looks])  # fmt: skip
    ax.set(xlabel="look", ylabel=TRIAL_METRICS[state.design.metric].label)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small", ncols=2 if len(variants) > 6 else 1)
    fig.suptitle("The race: each look's 95 % interval over its seeds and scenes (x: eliminated)")
    return fig


def _bar_spread(spread: Sequence[Sequence[float]]) -> np.ndarray:
    """Error-bar lengths below and above the mean: no NaN (one seed) and never below 0, which
    the mean of equal values can fall to by a rounding (seeds that all answer "cubes" alike;
    matplotlib refuses a negative length)."""
    return np.clip(np.nan_to_num(np.asarray(spread, dtype=float)), 0.0, None)


def plot_final(variants: Sequence[VariantSummary]) -> Figure:
    """Best-epoch metrics per variant as bars (mean over seeds) with min-max bars."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_q, ax_l = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(variants)
    final = final_metrics()
    x = np.arange(len(final))
    palette = colours(len(variants))
    for i, v in enumerate(variants):
        summaries = [v.metrics[m.key] for m in final]
        means = np.array([s.mean for s in summaries])
        spread = [means - [s.min for s in summaries], [s.max for s in summaries] - means]
        colour = palette[i]
        ax_q.bar(x + i * width, means, width, yerr=_bar_spread(spread), capsize=3,
                 label=v.name, color=colour)  # fmt: skip
        loss = v.metrics["val_loss"]
        ax_l.bar(i, loss.mean, yerr=_bar_spread([[loss.mean - loss.min], [loss.max - loss.mean]]),
                 capsize=3, color=colour)  # fmt: skip
    ax_q.set_xticks(x + width * (len(variants) - 1) / 2, [m.label for m in final])
    ax_q.set(ylim=(0, 1.05), title="Validation metrics at the best epoch")
    ax_q.legend(fontsize=8)
    ax_l.set_xticks(range(len(variants)), [v.name for v in variants], rotation=30, ha="right")
    ax_l.set(title="Min validation loss")
    fig.suptitle("Mean over seeds; bars: min to max")
    return fig


def output_dir(out_dir: str) -> str:
    """`out_dir` made absolute and created if missing; one-line UserError if it cannot be."""
    return str(check_output_dir(out_dir, "--plots", create=True))


def write_plots(table: ComparisonTable, out_dir: str) -> list[str]:
    """Write curves.png and final_metrics.png, for more than two variants ranking.png, and with
    per-scene scores paired_differences.png, wrong_scenes.png and reliability.png into
    `out_dir` (created if missing); their paths."""
    from analysis.scene_plots import plot_paired, plot_reliability, plot_wrong_scenes

    variants = table.variants
    if not variants:
        raise UserError("--plots: no trial has reported results yet, nothing to plot")
    out_dir = output_dir(out_dir)
    paths = [
        save_figure(plot_curves(variants), out_dir, "curves.png"),
        save_figure(plot_final(variants), out_dir, "final_metrics.png"),
    ]
    if table.ranking is not None:
        paths.append(save_figure(plot_ranking(table.ranking), out_dir, "ranking.png"))
    if table.race is not None and table.race.state.looks:
        paths.append(save_figure(plot_race(table.race), out_dir, "race.png"))
    scenes = table.scenes
    if scenes is None:
        return paths
    if table.ranking is not None:
        reference = table.ranking.best.name
        rows = [(r.variant.name, r.paired) for r in table.ranking.rows[1:]]
    else:
        reference = variants[0].name
        compared = vs_best_metrics(table.primary)
        rows = [(variants[1].name, {k: table.paired[k] for k in compared})] if table.paired else []
    if rows:
        fig = plot_paired(rows, reference, scenes.coverage)
        paths.append(save_figure(fig, out_dir, "paired_differences.png"))
    order = [r.variant.name for r in table.ranking.rows] if table.ranking else [
        v.name for v in variants]  # fmt: skip
    paths.append(save_figure(plot_wrong_scenes(scenes, order), out_dir, "wrong_scenes.png"))
    paths.append(save_figure(plot_reliability(scenes, order), out_dir, "reliability.png"))
    return paths
