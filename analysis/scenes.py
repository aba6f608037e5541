"""Per-scene statistics of the variants of one table: every trial's stored scores
(predictions.json beside its checkpoint) aligned by scene id, so intervals cover scene sampling
(and seeds) and comparisons pair on the same scenes (analysis.inference does the statistics).

Which scores: with a held-out test split (--test-fraction) every number comes from the test
scenes, at the epoch validation chose. Without one, the table's cells are at each trial's best
epoch, chosen on these same validation scenes (the seed notebook's protocol: optimistic), and the
verdict uses each trial's last epoch, which nothing chose on them.

Reads plain JSON through the checkpoint's filesystem (local or remote), never a pickle. When a
trial has no usable record (an experiment from before they were stored, a record of another epoch
than the trial's best), there are no scene statistics and a note says which trial and why: the
table falls back to what the seeds alone can say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from analysis import inference
from analysis.inference import BestSet, Difference, Influence, Interval
from analysis.stats import SEED_KEY, TrialResult, VariantSummary
from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import SCENE_METRICS
from tune_cilp.core.path_guard import open_stored
from tune_cilp.core.predictions import PREDICTIONS_FILE, Predictions

SCENES_ONLY, SEEDS_AND_SCENES = inference.SCENES_ONLY, inference.SEEDS_AND_SCENES
MIXED = "training seeds and validation scenes where a variant has 2+ seeds, else scenes only"
VALIDATION, TEST = "validation", "test"
LAST_EPOCH = "the last epoch's validation scores (no epoch chosen on them)"
TEST_SPLIT = "the held-out test scores (epochs chosen on validation)"


@dataclass
class VariantScenes:
    """One variant's scores per seed (rows sorted by seed): those the table shows and those the
    verdict uses (the same arrays with a test split), and each metric's interval."""

    seeds: list[int]
    proba: np.ndarray  # (seeds, N) probability of spheres, the table's scores
    verdict_proba: np.ndarray  # (seeds, N) the verdict's scores
    estimates: dict[str, Interval]

    def correct(self, labels: np.ndarray) -> np.ndarray:
        """(seeds, N) whether each seed's model classifies each scene right at 0.5."""
        return (self.proba >= 0.5) == (labels == 1)


@dataclass
class SceneStats:
    """The scene-level view of a table's variants, all on the same scenes.

    paired_seeds: the variants' seeds share real upstream trials (CILP chains), so seed i of
    one variant pairs with seed i of another."""

    ids: np.ndarray
    labels: np.ndarray
    variants: dict[str, VariantScenes]  # by variant name
    split: str = VALIDATION  # where the scores come from: VALIDATION or TEST
    paired_seeds: bool = False
    _influence: dict[tuple[str, str, bool], Influence] = field(default_factory=dict, repr=False)

    @property
    def coverage(self) -> str:
        """What the intervals cover."""
        single = {len(v.seeds) == 1 for v in self.variants.values()}
        if single == {True}:
            return SCENES_ONLY
        return SEEDS_AND_SCENES if single == {False} else MIXED

    @property
    def split_name(self) -> str:
        """The split its scores come from, in words: "validation" or "held-out test"."""
        return "held-out test" if self.split == TEST else "validation"

    @property
    def verdict_scores(self) -> str:
        """Which scores the verdict rests on."""
        return TEST_SPLIT if self.split == TEST else LAST_EPOCH

    def _own_verdict_scores(self, verdict: bool) -> bool:
        """Whether the verdict's scores differ from the table's (with a test split they are the
        same scores: nothing is computed twice)."""
        return verdict and self.split != TEST

    def influence(self, name: str, metric: str, verdict: bool = False) -> Influence:
        verdict = self._own_verdict_scores(verdict)
        key = (name, metric, verdict)
        if key not in self._influence:
            v = self.variants[name]
            scores = v.verdict_proba if verdict else v.proba
            self._influence[key] = Influence.of(scores, self.labels, metric)
        return self._influence[key]

    def compare(self, a: str, b: str, metric: str, verdict: bool = False) -> Difference:
        """b - a in `metric` on the same scenes (analysis.inference.difference_of); where it
        has no spread to test, the interval MOVER makes of the two variants' own intervals."""
        d = inference.difference_of(
            self.influence(a, metric, verdict), self.influence(b, metric, verdict),
            self._paired(a, b),
        )  # fmt: skip
        if np.isfinite(d.low) or not np.isfinite(d.difference):
            return d
        ia, ib = (self.interval(n, metric, verdict) for n in (a, b))
        return inference.mover_difference(ia, ib, d)

    def interval(self, name: str, metric: str, verdict: bool = False) -> Interval:
        """A variant's metric_interval on the table's (or the verdict's) scores."""
        if not self._own_verdict_scores(verdict):
            return self.variants[name].estimates[metric]
        return inference.metric_interval(self.variants[name].verdict_proba, self.labels, metric)

    def best(self, metric: str, alpha: float = 1 - inference.CONFIDENCE) -> BestSet:
        """All-pairs comparison on the verdict's scores; the confidence set for the best."""
        infl = {n: self.influence(n, metric, verdict=True) for n in self.variants}
        paired = self.paired_seeds and len({tuple(v.seeds) for v in self.variants.values()}) == 1
        return inference.best_set_of(infl, metric, paired, alpha)

    def _paired(self, a: str, b: str) -> bool:
        return self.paired_seeds and self.variants[a].seeds == self.variants[b].seeds

    def mcnemar(self, a: str, b: str) -> tuple[float, int, int] | None:
        """McNemar's exact test on correctness at 0.5 (p, scenes only a gets right, only b);
        None unless both variants have a single seed (one classifier per side)."""
        va, vb = self.variants[a], self.variants[b]
        if len(va.seeds) != 1 or len(vb.seeds) != 1:
            return None
        from analysis.bootstrap import mcnemar_p

        return mcnemar_p(va.correct(self.labels)[0], vb.correct(self.labels)[0])

    def delong(self, a: str, b: str) -> float | None:
        """DeLong's p for the ROC AUC difference, one seed each (else None)."""
        va, vb = self.variants[a], self.variants[b]
        if len(va.seeds) != 1 or len(vb.seeds) != 1 or len(set(self.labels.tolist())) < 2:
            return None
        return inference.delong_p(va.proba[0], vb.proba[0], self.labels)[1]

    def note(self) -> str:
        """The footer line that says how the intervals and tests were made."""
        n_pos = int(np.sum(self.labels == 1))
        split = self.split_name
        chosen = (
            "The epochs were chosen on validation, so nothing here was chosen on these scenes."
            if self.split == TEST
            else "Cells and differences are at each trial's best epoch, chosen on these same "
            "scenes (the seed's protocol: optimistic, and their intervals do not cover that "
            "choice); the verdict uses each trial's last epoch, which nothing chose."
        )
        seeds = (
            ""
            if self.coverage == SCENES_ONLY
            else " Seeds enter with k - 1 df (a t on per-seed values)"
            + (", paired by seed (shared upstream trials)" if self.paired_seeds else "")
            + " plus the scene variance they share."
        )
        return (
            f"Intervals [95%] over {self.coverage}, on {len(self.labels) - n_pos} cubes and "
            f"{n_pos} spheres ({split}): Clopper-Pearson (accuracy), Wilson (balanced accuracy, "
            "F1), Newcombe's score interval (ROC AUC), t (loss; Brier: widened to Wilson's "
            "bound); they stay inside each metric's range and '[>= x]' marks an interval that "
            "reaches the bound. Differences and p: stratified jackknife over the same scenes."
            + seeds
            + " "
            + chosen
        )


def read_predictions(trial: TrialResult) -> Predictions | str:
    """The trial's stored record, or why there is none (a phrase for a note)."""
    checkpoint = trial.checkpoint
    if checkpoint is None:
        return "no checkpoint"
    path = f"{checkpoint.path.rstrip('/')}/{PREDICTIONS_FILE}"
    try:
        with open_stored(checkpoint.filesystem, path) as f:
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


def _scenes_of(pred: Predictions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ids, labels, table scores, verdict scores) of one record."""
    ids, labels, verdict = pred.verdict()
    table = verdict if pred.test is not None else pred.best.proba  # type: ignore[union-attr]
    return ids, labels, table, verdict


def scene_stats(
    variants: Sequence[VariantSummary], paired_seeds: bool = False
) -> tuple[SceneStats | None, list[str]]:
    """Scene statistics of `variants` and notes; None (and a note saying why) when a trial has
    no usable record or the trials were scored on different scenes."""
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
    split = TEST if first.test is not None else VALIDATION
    ids, labels, _, _ = _scenes_of(first)
    for name, recs in records.items():
        for seed, pred in recs:
            other_ids, other_labels, _, _ = _scenes_of(pred)
            if (pred.test is not None) != (split == TEST) or not (
                np.array_equal(other_ids, ids) and np.array_equal(other_labels, labels)
            ):
                return None, [
                    f"No per-scene intervals or paired tests: {name} seed={seed} was scored on "
                    "other scenes than the first variant (different data, split or test split)."
                ]
    out, notes = {}, []
    for name, recs in records.items():
        recs.sort(key=lambda r: r[0])
        recs, repeats = _distinct_scores(recs)
        if repeats:
            notes.append(
                f"{name}: seed(s) {', '.join(map(str, repeats))} gave bit-identical scores to "
                "another seed, so they are the same run and are counted once."
            )
        table = np.stack([_scenes_of(p)[2] for _, p in recs])
        verdict = np.stack([_scenes_of(p)[3] for _, p in recs])
        estimates = {m: inference.metric_interval(table, labels, m) for m in SCENE_METRICS}
        out[name] = VariantScenes([s for s, _ in recs], table, verdict, estimates)
    return SceneStats(ids, labels, out, split, paired_seeds), notes


def _distinct_scores(
    recs: list[tuple[int, Predictions]],
) -> tuple[list[tuple[int, Predictions]], list[int]]:
    """The records whose scores no earlier seed has bit for bit, and the seeds left out."""
    kept, repeats, seen = [], [], set()
    for seed, pred in recs:
        _, _, table, verdict = _scenes_of(pred)
        key = table.tobytes() + verdict.tobytes()
        if key in seen:
            repeats.append(seed)
        else:
            seen.add(key)
            kept.append((seed, pred))
    return kept, repeats
