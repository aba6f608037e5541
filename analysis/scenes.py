"""Per-scene statistics of the variants of one table: every trial's stored validation scores
(predictions.json beside its checkpoint) aligned by scene id, resampled once for all variants, so
intervals cover scene sampling (and seeds) and comparisons pair on the same scenes.

Reads plain JSON through the checkpoint's filesystem (local or remote), never a pickle. When a
trial has no usable record (an experiment from before they were stored, a record of another epoch
than the trial's best), there are no scene statistics and a note says which trial and why: the
table falls back to what the seeds alone can say.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis import bootstrap
from analysis.bootstrap import Estimate, Paired
from analysis.stats import SEED_KEY, TrialResult, VariantSummary
from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import SCENE_METRICS
from tune_cilp.core.predictions import PREDICTIONS_FILE, Predictions

SCENES_ONLY = "validation scenes only"  # one seed per variant: no training randomness covered
SEEDS_AND_SCENES = "seeds and validation scenes"
FEW_SEEDS = range(2, 6)  # a bootstrap over this many seeds is coarse: the note says so


@dataclass
class VariantScenes:
    """One variant's best-epoch scores per seed (rows sorted by seed) and its bootstrap."""

    seeds: list[int]
    proba: np.ndarray  # (seeds, N) probability of spheres
    estimates: dict[str, Estimate]  # metric -> mean over seeds, percentile interval
    replicates: dict[str, np.ndarray]  # metric -> (R,)

    def correct(self, labels: np.ndarray) -> np.ndarray:
        """(seeds, N) whether each seed's model classifies each scene right at 0.5."""
        return (self.proba >= 0.5) == (labels == 1)


@dataclass
class SceneStats:
    """The scene-level view of a table's variants, all on the same validation scenes."""

    ids: np.ndarray
    labels: np.ndarray
    variants: dict[str, VariantScenes]  # by variant name

    @property
    def coverage(self) -> str:
        """What the intervals cover."""
        single = all(len(v.seeds) == 1 for v in self.variants.values())
        return SCENES_ONLY if single else SEEDS_AND_SCENES

    def compare(self, a: str, b: str, metric: str) -> Paired:
        """b - a in `metric` on the same resampled scenes (and seeds where they share them)."""
        va, vb = self.variants[a], self.variants[b]
        diff = vb.estimates[metric].value - va.estimates[metric].value
        return bootstrap.paired(diff, va.replicates[metric], vb.replicates[metric])

    def mcnemar(self, a: str, b: str) -> tuple[float, int, int] | None:
        """McNemar's exact test on correctness at 0.5 (p, scenes only a gets right, only b);
        None unless both variants have a single seed (one classifier per side)."""
        va, vb = self.variants[a], self.variants[b]
        if len(va.seeds) != 1 or len(vb.seeds) != 1:
            return None
        return bootstrap.mcnemar_p(va.correct(self.labels)[0], vb.correct(self.labels)[0])

    def note(self) -> str:
        """The footer line that says how the intervals and paired tests were made."""
        n_pos = int(np.sum(self.labels == 1))
        how = (
            "validation scenes resampled within each class"
            if self.coverage == SCENES_ONLY
            else "seeds resampled, then validation scenes within each class"
        )
        return (
            f"Intervals [95%]: percentile bootstrap ({bootstrap.REPLICATES} replicates, fixed "
            f"seed {bootstrap.RNG_SEED}; {how}: {len(self.labels) - n_pos} cubes, {n_pos} "
            f"spheres); they cover {self.coverage}"
            + (", not another training run" if self.coverage == SCENES_ONLY else "")
            + (
                f"; with {few} seeds, resampling seeds understates their spread (rough intervals)"
                if (few := min(len(v.seeds) for v in self.variants.values())) in FEW_SEEDS
                else ""
            )
            + ". Differences are paired: every variant is scored on the same resampled scenes; "
            f"a bootstrap p is at least {2 / (bootstrap.REPLICATES + 1):.2g}. The best epoch was "
            "chosen on these same scenes, so the values are optimistic."
        )


def read_predictions(trial: TrialResult) -> Predictions | str:
    """The trial's stored record, or why there is none (a phrase for a note)."""
    checkpoint = trial.checkpoint
    if checkpoint is None:
        return "no checkpoint"
    path = f"{checkpoint.path.rstrip('/')}/{PREDICTIONS_FILE}"
    try:
        with checkpoint.filesystem.open_input_stream(path) as f:
            text = f.read()
    except FileNotFoundError:
        return f"no {PREDICTIONS_FILE} (made before per-scene scores were stored)"
    except OSError as exc:
        return f"cannot read {path} ({exc})"
    try:
        pred = Predictions.from_json(text, source=path)
    except UserError as exc:
        return str(exc)
    if pred.best is None or pred.best.epoch != trial.best_epoch:
        stored = "none" if pred.best is None else f"epoch {pred.best.epoch}"
        return f"best-epoch scores stored for {stored}, its results' best is {trial.best_epoch}"
    return pred


def scene_stats(variants: Sequence[VariantSummary]) -> tuple[SceneStats | None, list[str]]:
    """Scene statistics of `variants` and notes; None (and a note saying why) when a trial has
    no usable record or the trials were validated on different scenes."""
    records: dict[str, list[tuple[int, Predictions]]] = {}
    missing: dict[str, list[str]] = {}  # reason -> trials
    for v in variants:
        for t in v.trials:
            pred = read_predictions(t)
            if isinstance(pred, str):
                name = f"{t.trial_id} ({v.name} seed={t.config.get(SEED_KEY, '?')})"
                missing.setdefault(pred, []).append(name)
            else:
                records.setdefault(v.name, []).append((int(t.config.get(SEED_KEY, 0)), pred))
    if missing:
        groups = []
        for reason, names in missing.items():
            more = f", and {len(names) - 3} more" if len(names) > 3 else ""
            groups.append(f"{reason}: {len(names)} trial(s), {', '.join(names[:3])}{more}")
        return None, [
            "No per-scene intervals or paired tests: " + "; ".join(groups) + ". Cells show "
            "what the seeds alone give."
        ]
    first = next(iter(records.values()))[0][1]
    ids, labels = first.ids, first.labels
    for name, recs in records.items():
        for seed, pred in recs:
            if not (np.array_equal(pred.ids, ids) and np.array_equal(pred.labels, labels)):
                return None, [
                    f"No per-scene intervals or paired tests: {name} seed={seed} was validated on "
                    "other scenes than the first variant (different data or split)."
                ]
    counts = bootstrap.stratified_counts(labels)
    out = {}
    for name, recs in records.items():
        recs.sort(key=lambda r: r[0])
        seeds = [s for s, _ in recs]
        proba = np.stack([p.best.proba for _, p in recs])  # type: ignore[union-attr]
        out[name] = _variant_scenes(seeds, proba, labels, counts)
    return SceneStats(ids, labels, out), []


def _variant_scenes(
    seeds: list[int], proba: np.ndarray, labels: np.ndarray, counts: np.ndarray
) -> VariantScenes:
    whole = np.ones((1, len(labels)))
    draws = bootstrap.seed_draws(seeds)
    per_seed = [bootstrap.scene_metrics(p, labels, counts) for p in proba]
    values = [bootstrap.scene_metrics(p, labels, whole) for p in proba]
    estimates, replicates = {}, {}
    for m in SCENE_METRICS:
        reps = bootstrap.seed_mean(np.stack([s[m] for s in per_seed]), draws)
        value = float(np.mean([v[m][0] for v in values]))
        replicates[m] = reps
        estimates[m] = (
            bootstrap.percentile(value, reps) if math.isfinite(value) else Estimate(value)
        )
    return VariantScenes(seeds, proba, estimates, replicates)
