"""PNG plots from the per-scene statistics: the paired differences against a reference variant
(one interval per variant and metric), the scenes each variant gets wrong (a grid: variants
down, misclassified scenes across, coloured by the probability given to the true class), and
the reliability curve (is a predicted 0.8 right 80 % of the time?)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from analysis.inference import Difference
from analysis.scenes import SceneStats
from tune_cilp.core.metrics import TRIAL_METRICS

MAX_SCENES = 80  # columns of the wrong-scenes grid; the title says when there are more


def plot_paired(
    rows: Sequence[tuple[str, dict[str, Difference]]], reference: str, coverage: str
) -> Figure:
    """One panel per metric: each variant's difference from `reference` (variant minus it) with
    its paired 95 % interval, a line at zero; `rows` in the order to draw, top first."""
    metrics = list(rows[0][1])
    height = max(2.8, 1.4 + 0.38 * len(rows))
    fig = Figure(figsize=(4.2 * len(metrics), height), layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    y = np.arange(len(rows))[::-1]
    for ax, key in zip(axes, metrics, strict=True):
        d = [r[1][key] for r in rows]
        value = np.array([e.difference for e in d])
        low = np.array([e.low if np.isfinite(e.low) else e.difference for e in d])
        high = np.array([e.high if np.isfinite(e.high) else e.difference for e in d])
        ax.errorbar(value, y, xerr=[value - low, high - value], fmt="o", capsize=4, color="C0")
        ax.axvline(0.0, color="grey", lw=1, ls="--")
        ax.set(title=f"Δ {TRIAL_METRICS[key].label}", xlabel=f"variant − {reference}")
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(y, [name for name, _ in rows])
    fig.suptitle(f"Paired differences against {reference}, 95 % intervals over {coverage}")
    return fig


def plot_wrong_scenes(scenes: SceneStats, names: Sequence[str]) -> Figure:
    """Variants (rows) against the validation scenes any of them gets wrong at 0.5 (columns,
    spheres first): colour = mean probability given to the true class over its seeds (red: sure
    and wrong), "×" where most of its seeds get the scene wrong."""
    labels = scenes.labels
    truth = np.stack(
        [
            np.where(labels == 1, v.proba, 1 - v.proba).mean(axis=0)
            for v in (scenes.variants[n] for n in names)
        ]
    )
    wrong = np.stack([(~scenes.variants[n].correct(labels)).mean(axis=0) > 0.5 for n in names])
    columns = np.flatnonzero(wrong.any(axis=0))
    columns = columns[np.lexsort((columns, -labels[columns]))]  # spheres first, then by id
    shown = columns[:MAX_SCENES]
    size = (min(3 + 0.22 * max(len(shown), 24), 22), max(3.0, 1.6 + 0.4 * len(names)))
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.subplots()
    if len(shown) == 0:
        ax.text(0.5, 0.5, "every variant gets every scene right", ha="center", va="center")
        ax.set_axis_off()
    else:
        image = ax.imshow(truth[:, shown], cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
        rows, cols = np.nonzero(wrong[:, shown])
        ax.scatter(cols, rows, marker="x", color="black", s=18)
        ax.set_yticks(range(len(names)), names)
        ax.set_xticks(range(len(shown)), [str(i) for i in scenes.ids[shown]], rotation=90,
                      fontsize=6)  # fmt: skip
        fig.colorbar(image, ax=ax, label="P(true class)", shrink=0.8)
    more = f" (first {MAX_SCENES} of {len(columns)})" if len(columns) > MAX_SCENES else ""
    fig.suptitle(f"Validation scenes some variant gets wrong{more}: × = wrong at 0.5 on most seeds")
    return fig


RELIABILITY_BINS = 10


def plot_reliability(scenes: SceneStats, names: Sequence[str]) -> Figure:
    """Per variant (all its seeds pooled), the share of spheres among the scenes in each bin of
    predicted probability against the bin's mean prediction, with a Wilson 95 % interval per
    bin; the diagonal is perfect calibration. Bins with no scene are left out."""
    from statsmodels.stats.proportion import proportion_confint

    fig = Figure(figsize=(6.4, 5.2), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="calibrated")
    edges = np.linspace(0, 1, RELIABILITY_BINS + 1)
    for i, name in enumerate(names):
        proba = scenes.variants[name].proba.ravel()
        labels = np.tile(scenes.labels, scenes.variants[name].proba.shape[0])
        which = np.clip(np.digitize(proba, edges[1:-1]), 0, RELIABILITY_BINS - 1)
        mean, rate, low, high = [], [], [], []
        for b in range(RELIABILITY_BINS):
            inside = which == b
            n = int(inside.sum())
            if n == 0:
                continue
            hits = int(labels[inside].sum())
            lo, hi = proportion_confint(hits, n, method="wilson")
            mean.append(float(proba[inside].mean()))
            rate.append(hits / n)
            low.append(max(hits / n - lo, 0.0))
            high.append(max(hi - hits / n, 0.0))
        ax.errorbar(mean, rate, yerr=[low, high], fmt="o", capsize=3, label=name, alpha=0.85,
                    color=f"C{i % 10}")  # fmt: skip
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted probability of spheres",
           ylabel="share of spheres (Wilson 95 %)")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    where = "held-out test" if scenes.split == "test" else "validation"
    fig.suptitle(f"Reliability on the {where} scenes ({RELIABILITY_BINS} bins, seeds pooled)")
    return fig
