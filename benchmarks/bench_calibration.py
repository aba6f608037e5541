"""Calibration of the analysis' inference (analysis/inference.py) by simulation with known truth.

Prints, beside the nominal level, at the sizes people run (164 cubes + 15 spheres per validation
split, 1-5 seeds, scores near 1):
- type-I error of compare_scores (two variants with the same distribution of trained models) at
  1 vs 1, 3 vs 3 and 5 vs 5 seeds under seed-dominated and scene-dominated noise;
- coverage of metric_interval at true ROC AUC 0.90 / 0.99 / 0.999 and accuracy 0.99 / 1.0
  (one seed; three seeds too);
- the ranking's family-wise error (any variant called worse) with 3 and 10 equal variants;
- racing seeds (analysis/race.py, default design: 3 seeds to start, at most 10, alpha 0.05):
  one look's all-pairs error at its level (2, 3, 5 seeds), the family-wise error with 3 and 10
  equal variants, the share of races that keep the truly best variant and the trials they use
  against the fixed design (10 seeds each) under the seed's maxpool-vs-stride gap and the
  fusion space's spread, and the equivalence stop (--margin). The races run in --jobs
  processes (default: the CPU count), each from its own seed, so the figures do not depend on
  it; the race part alone took 2,340 s on 2 busy cores (docs/STATISTICS.md).

    .venv/bin/python benchmarks/bench_calibration.py [--reps 1000] [--jobs 2]
        [--only typeI,coverage,ranking[,race] | --race-only]

The model of a trained classifier: a latent score per scene s = delta_i * y + c * z + e * eps,
z ~ N(0, 1) shared by every model (how hard the scene is), eps ~ N(0, 1) its own, c^2 + e^2 = 1,
delta_i = delta + sigma_u * u_i the seed's separation (u ~ N(0, 1)), and the calibrated
probability p = sigmoid(delta_i s - delta_i^2 / 2 + logit(prevalence)). Each repetition draws new
scenes and new seeds. Not a test: nothing is asserted; docs/STATISTICS.md holds its output.
"""

from __future__ import annotations

import argparse
import functools
import gc
import math
import multiprocessing
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.optimize import brentq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from analysis.bootstrap import holm  # noqa: E402
from analysis.inference import (  # noqa: E402
    Influence,
    best_set_of,
    difference_of,
    metric_interval,
    point_values,
)
from analysis.race import (  # noqa: E402
    EQUIVALENT,
    MAX_SEEDS,
    RaceDesign,
    RaceState,
    SeedScores,
    decide,
)

N_NEG, N_POS = 164, 15
LABELS = np.array([0] * N_NEG + [1] * N_POS)
LOGIT_PREV = math.log(N_POS / N_NEG)
NOMINAL = 0.95
TYPE_I_METRICS = ("val_loss", "val_brier", "val_roc_auc", "val_balanced_accuracy")


@dataclass(frozen=True)
class Noise:
    name: str
    sigma_u: float  # seed-to-seed spread of the separation delta
    c: float  # weight of the shared scene difficulty (e = sqrt(1 - c^2))


SEED_DOMINATED = Noise("seed-dominated", sigma_u=0.6, c=0.9)
SCENE_DOMINATED = Noise("scene-dominated", sigma_u=0.05, c=0.3)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def probabilities(deltas: np.ndarray, z: np.ndarray, c: float, rng) -> np.ndarray:
    """(seeds, N) calibrated probabilities of spheres for models with separations `deltas`."""
    e = math.sqrt(max(1 - c * c, 0.0))
    eps = rng.standard_normal((len(deltas), len(LABELS)))
    d = deltas[:, None]
    s = d * LABELS[None, :] + c * z[None, :] + e * eps
    return 1 / (1 + np.exp(-(d * s - d * d / 2 + LOGIT_PREV)))


def delta_for_auc(auc: float) -> float:
    return math.sqrt(2) * stats.norm.ppf(auc)


def population(delta: float) -> dict[str, float]:
    """The metrics of a model with separation `delta` on the scene population with the split's
    class counts (accuracy at p >= 0.5)."""
    t = delta / 2 - LOGIT_PREV / delta  # p >= 0.5 where s >= t
    spec, sens = stats.norm.cdf(t), stats.norm.sf(t - delta)
    fp, tp = N_NEG * (1 - spec), N_POS * sens
    return {
        "val_roc_auc": float(stats.norm.cdf(delta / math.sqrt(2))),
        "val_accuracy": float((N_NEG * spec + N_POS * sens) / (N_NEG + N_POS)),
        "val_balanced_accuracy": float((spec + sens) / 2),
        "val_f1": float(2 * tp / (2 * tp + fp + N_POS - tp)),
    }


def delta_for_accuracy(acc: float) -> float:
    return brentq(lambda d: population(d)["val_accuracy"] - acc, 0.5, 12.0)


def type_one(noise: Noise, k: int, reps: int, rng) -> dict[str, float]:
    """Share of repetitions in which compare_scores rejects at 5 % for two variants with the
    same distribution of trained models. 1 vs 1: both models get the same delta (equal trained
    models), so only the scenes decide."""
    delta = delta_for_auc(0.97)
    rejected = dict.fromkeys(TYPE_I_METRICS, 0)
    for _ in range(reps):
        z = rng.standard_normal(len(LABELS))
        if k == 1:
            shared = delta + noise.sigma_u * rng.standard_normal(1)
            da, db = shared, shared
        else:
            da = delta + noise.sigma_u * rng.standard_normal(k)
            db = delta + noise.sigma_u * rng.standard_normal(k)
        a, b = probabilities(da, z, noise.c, rng), probabilities(db, z, noise.c, rng)
        for m in TYPE_I_METRICS:
            d = difference_of(Influence.of(a, LABELS, m), Influence.of(b, LABELS, m))
            rejected[m] += bool(d.p_value < 0.05)
    return {m: v / reps for m, v in rejected.items()}


def coverage(
    delta: float | None, truth: dict[str, float], k: int, noise: Noise, reps: int, rng
) -> dict[str, float]:
    """Share of repetitions whose metric_interval holds the truth (the population metric of
    the seeds' mean). delta None: a perfectly separating model (accuracy 1)."""
    metrics = list(truth)
    hits = dict.fromkeys(metrics, 0)
    for _ in range(reps):
        if delta is None:
            proba = np.where(LABELS == 1, rng.uniform(0.6, 1.0, len(LABELS)),
                             rng.uniform(0.0, 0.4, len(LABELS)))[None]  # fmt: skip
        else:
            z = rng.standard_normal(len(LABELS))
            deltas = delta + (noise.sigma_u * rng.standard_normal(k) if k > 1 else np.zeros(1))
            proba = probabilities(np.maximum(deltas, 0.05), z, noise.c, rng)
        for m in metrics:
            iv = metric_interval(proba, LABELS, m)
            hits[m] += bool(iv.low <= truth[m] <= iv.high)
    return {m: v / reps for m, v in hits.items()}


def seeds_truth(delta: float, noise: Noise, draws: int = 20000) -> dict[str, float]:
    """Expected population metrics over the seeds' separations."""
    rng = np.random.default_rng(12345)
    deltas = np.maximum(delta + noise.sigma_u * rng.standard_normal(draws), 0.05)
    rows = [population(d) for d in deltas]
    return {m: float(np.mean([r[m] for r in rows])) for m in rows[0]}


def ranking_error(
    n_variants: int, k: int, reps: int, rng, noise: Noise, alpha: float = 0.05
) -> float:
    """Share of repetitions in which some variant is called worse than another, all equal."""
    delta = delta_for_auc(0.97)
    errors = 0
    for _ in range(reps):
        z = rng.standard_normal(len(LABELS))
        shared = delta + noise.sigma_u * rng.standard_normal(1)
        reps_by = {}
        for v in range(n_variants):
            deltas = shared if k == 1 else delta + noise.sigma_u * rng.standard_normal(k)
            proba = probabilities(deltas, z, noise.c, rng)
            reps_by[f"v{v}"] = Influence.of(proba, LABELS, "val_loss")
        errors += bool(best_set_of(reps_by, "val_loss", alpha=alpha).worse)
    return errors / reps


# Racing seeds (analysis/race.py, its default design). The realistic effects, as the model's
# ROC AUCs, the truly best first (their mean validation losses in this model are printed beside
# the figures): the seed's maxpool against stride (docs/RESULTS.md, three seeds: ROC AUC 0.999
# vs 0.887, validation loss 0.016 vs 0.22), and the fusion space's ten variants (docs/RESULTS.md,
# fusion-3seeds-10epochs: validation loss 0.12 for the best, 0.18 the next, then 0.22-0.29).
SEED_PAIR = (0.999, 0.887)
FUSION_SPREAD = (0.96, 0.90, 0.82, 0.82, 0.78, 0.78, 0.75, 0.75, 0.70, 0.70)
EQUAL_AUC = 0.97
# The equivalence stop: equal variants with a margin of 0.1 (the loss's seed spread is about
# 0.055 here), and two equal variants with a third whose true loss gap to them is exactly the
# margin (the worst case: a stop as equivalent with it among the survivors is an error).
EQUIVALENCE_MARGIN = 0.1
BOUNDARY = (0.97, 0.97, 0.93)
RACE_NOISE = SEED_DOMINATED  # training randomness is what seeds are raced for


@functools.cache
def mean_loss(auc: float, noise: Noise = RACE_NOISE, draws: int = 200) -> float:
    """A variant's expected validation loss over seeds and scene sets (Monte Carlo, 10,000
    trained models: standard error about 0.0005)."""
    rng = np.random.default_rng(777)
    total = 0.0
    for _ in range(draws):
        deltas = delta_for_auc(auc) + noise.sigma_u * rng.standard_normal(50)
        z = rng.standard_normal(len(LABELS))
        total += float(point_values(probabilities(np.maximum(deltas, 0.05), z, noise.c, rng),
                                    LABELS, "val_loss").mean())  # fmt: skip
    return total / draws


def one_race(aucs: tuple[float, ...], noise: Noise, margin: float | None, seed) -> RaceState:
    """A race of variants v0, v1, ... with true ROC AUCs `aucs`, on one set of validation
    scenes. Every variant's max_seeds trials are drawn up front; decide uses only those its
    looks reach, which is the same as drawing each when it is asked for."""
    rng = np.random.default_rng(seed)
    design = RaceDesign(tuple(f"v{i}" for i in range(len(aucs))), margin=margin)
    z = rng.standard_normal(len(LABELS))
    results = {}
    for name, auc in zip(design.variants, aucs, strict=True):
        deltas = delta_for_auc(auc) + noise.sigma_u * rng.standard_normal(design.max_seeds)
        proba = probabilities(np.maximum(deltas, 0.05), z, noise.c, rng)
        results[name] = [SeedScores(s, p) for s, p in zip(design.seeds, proba, strict=True)]
    return decide(design, LABELS, results)


def race_counts(aucs: tuple[float, ...], noise: Noise, margin: float | None, seed) -> np.ndarray:
    """One race's (kept v0, left v0 alone, eliminated any, stopped equivalent, stopped
    equivalent with the last variant among the survivors, trials used)."""
    state = one_race(aucs, noise, margin, seed)
    equivalent = state.outcome == EQUIVALENT
    return np.array([
        "v0" in state.survivors,
        state.winner == "v0",
        len(state.survivors) < len(aucs),
        equivalent,
        equivalent and f"v{len(aucs) - 1}" in state.survivors,
        sum(state.seeds_used.values()),
    ], dtype=float)  # fmt: skip


def race_figures(
    aucs: tuple[float, ...],
    reps: int,
    seed: tuple[int, ...],
    jobs: int,
    noise: Noise = RACE_NOISE,
    margin: float | None = None,
) -> dict[str, float]:
    """`reps` races (one_race), each from its own child of `seed`, so the figures do not depend
    on `jobs` or on the other figures: the shares of race_counts, the mean trials used and
    their ratio to the fixed design (max_seeds for every variant)."""
    run = functools.partial(race_counts, aucs, noise, margin)
    seeds = np.random.SeedSequence(seed).spawn(reps)
    if jobs > 1:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            rows = pool.map(run, seeds, chunksize=max(1, reps // (4 * jobs)))
    else:
        rows = [run(s) for s in seeds]
    mean = np.mean(rows, axis=0)
    names = ("kept", "alone", "erred", "equivalent", "last_equivalent", "trials")
    out = dict(zip(names, mean.tolist(), strict=True))
    out["ratio"] = out["trials"] / (len(aucs) * MAX_SEEDS)
    return out


def race_tables(reps: int, seed: int, jobs: int) -> None:
    """The racing figures, each scenario from its own stream (seed, 32, its number)."""
    streams = iter(range(100))

    def figures(aucs, noise: Noise = RACE_NOISE, margin=None) -> tuple[dict[str, float], str]:
        start = time.perf_counter()
        r = race_figures(aucs, reps, (seed, 32, next(streams)), jobs, noise, margin)
        return r, f"{time.perf_counter() - start:.0f} s"

    level = RaceDesign(("a", "b")).look_alpha
    print(f"\n## One look of a race: the all-pairs test's family-wise error at a look's level "
          f"alpha / looks = {level:.5f}, 3 equal variants (ROC AUC 0.97)")  # fmt: skip
    print("| seeds each | seed-dominated | scene-dominated |")
    print("|---|---|---|")
    for k in (2, 3, 5):
        cells = [
            ranking_error(3, k, reps, np.random.default_rng((seed, 32, 50 + k, i)), noise, level)
            for i, noise in enumerate((SEED_DOMINATED, SCENE_DOMINATED))
        ]
        print(f"| {k} | {cells[0]:.4f} | {cells[1]:.4f} |", flush=True)
    print(f"\n## Racing seeds, all variants equal (ROC AUC {EQUAL_AUC}, validation loss "
          f"{mean_loss(EQUAL_AUC):.3f}): family-wise error at alpha 0.05")  # fmt: skip
    print("| variants | noise | FWER (any eliminated) | trials (fixed design) | time |")
    print("|---|---|---|---|---|")
    for n, noise in ((3, SEED_DOMINATED), (3, SCENE_DOMINATED), (10, SEED_DOMINATED)):
        r, took = figures((EQUAL_AUC,) * n, noise)
        print(f"| {n} | {noise.name} | {r['erred']:.3f} | {r['trials']:.1f} ({n * MAX_SEEDS}) "
              f"| {took} |", flush=True)  # fmt: skip
    print("\n## Racing seeds, realistic effects (seed-dominated): the truly best kept, trials "
          "against the fixed design")  # fmt: skip
    print("| effect | true validation losses | best kept | best alone | trials (fixed) | ratio "
          "| time |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, aucs in (("maxpool vs stride", SEED_PAIR), ("fusion spread", FUSION_SPREAD)):
        r, took = figures(aucs)
        losses = ", ".join(f"{mean_loss(a):.3f}" for a in aucs)
        print(f"| {name} | {losses} | {r['kept']:.3f} | {r['alone']:.3f} | {r['trials']:.1f} "
              f"({len(aucs) * MAX_SEEDS}) | {r['ratio']:.2f} | {took} |", flush=True)  # fmt: skip
    print("\n## Racing seeds with --margin (seed-dominated): the equivalence stop")
    print("| true validation losses | margin | stopped equivalent | with the last kept | "
          "any eliminated | trials (fixed) | time |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    gap = mean_loss(BOUNDARY[-1]) - mean_loss(BOUNDARY[0])
    for aucs, margin in (((EQUAL_AUC,) * 3, EQUIVALENCE_MARGIN), (BOUNDARY, gap)):
        r, took = figures(aucs, margin=margin)
        losses = ", ".join(f"{mean_loss(a):.3f}" for a in aucs)
        print(f"| {losses} | {margin:.3f} | {r['equivalent']:.3f} | {r['last_equivalent']:.3f} "
              f"| {r['erred']:.3f} | {r['trials']:.1f} ({len(aucs) * MAX_SEEDS}) | {took} |",
              flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=1000, help="repetitions per figure")
    # The race part is its own run (--race-only: 2,340 s on 2 busy cores); the default keeps
    # the analysis' figures at their old few minutes.
    parser.add_argument("--only", default="typeI,coverage,ranking")
    parser.add_argument("--race-only", action="store_true", help="only the racing figures")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="processes for the races")  # fmt: skip
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    parts = {"race"} if args.race_only else set(args.only.split(","))
    # Holm (statsmodels' multipletests) runs gc.collect() on every call: with the imported
    # modules' objects (statsmodels' too: holm imports it) frozen out of the collector's reach
    # that takes microseconds, not ~100 ms.
    holm([0.5])
    gc.freeze()
    print(f"# {cpu_model()}; {os.cpu_count()} cores; numpy {np.__version__}; "
          f"{args.reps} repetitions per figure; {N_NEG} cubes + {N_POS} spheres; "
          f"command: {' '.join(sys.argv)}")  # fmt: skip
    start = time.perf_counter()
    if "typeI" in parts:
        print("\n## Type-I error of compare_scores at nominal 0.05 (same distribution, AUC 0.97)")
        print("| noise | seeds | " + " | ".join(TYPE_I_METRICS) + " |")
        print("|---|---|" + "---|" * len(TYPE_I_METRICS))
        for noise in (SEED_DOMINATED, SCENE_DOMINATED):
            for k in (1, 3, 5):
                r = type_one(noise, k, args.reps, rng)
                cells = " | ".join(f"{r[m]:.3f}" for m in TYPE_I_METRICS)
                print(f"| {noise.name} | {k} vs {k} | {cells} |", flush=True)
    if "coverage" in parts:
        print(f"\n## Coverage of metric_interval at nominal {NOMINAL}")
        print("| truth | seeds | " + " | ".join(population(2.0)) + " |")
        print("|---|---|" + "---|" * 4)
        cases = [(f"ROC AUC {a}", delta_for_auc(a)) for a in (0.90, 0.99, 0.999)]
        cases += [("accuracy 0.99", delta_for_accuracy(0.99)), ("accuracy 1.0", None)]
        for label, delta in cases:
            for k in (1, 3):
                if delta is None:
                    if k > 1:
                        continue
                    truth = dict.fromkeys(population(2.0), 1.0)
                else:
                    truth = population(delta) if k == 1 else seeds_truth(delta, SEED_DOMINATED)
                r = coverage(delta, truth, k, SEED_DOMINATED, args.reps, rng)
                cells = " | ".join(f"{r[m]:.3f} (true {truth[m]:.4f})" for m in truth)
                print(f"| {label} | {k} | {cells} |", flush=True)
    if "ranking" in parts:
        print("\n## Ranking: family-wise error (any variant called worse), all variants equal")
        print("| variants | seeds each | noise | FWER |")
        print("|---|---|---|---|")
        for n in (3, 10):
            for k, noise in ((1, SCENE_DOMINATED), (3, SEED_DOMINATED)):
                err = ranking_error(n, k, args.reps, rng, noise)
                print(f"| {n} | {k} | {noise.name} | {err:.3f} |", flush=True)
    if "race" in parts:
        # Its own streams: the same figures with --race-only, and with any --jobs.
        race_tables(args.reps, args.seed, args.jobs)
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
