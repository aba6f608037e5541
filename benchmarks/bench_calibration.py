"""Calibration of the analysis' inference (analysis/inference.py) by simulation with known truth.

Prints, beside the nominal level, at the sizes people run (164 cubes + 15 spheres per validation
split, 1-5 seeds, scores near 1):
- type-I error of compare_scores (two variants with the same distribution of trained models) at
  1 vs 1, 3 vs 3 and 5 vs 5 seeds under seed-dominated and scene-dominated noise;
- coverage of metric_interval at true ROC AUC 0.90 / 0.99 / 0.999 and accuracy 0.99 / 1.0
  (one seed; three seeds too);
- the ranking's family-wise error (any variant called worse) with 3 and 10 equal variants.

    .venv/bin/python benchmarks/bench_calibration.py [--reps 1000] [--only typeI,coverage,ranking]

The model of a trained classifier: a latent score per scene s = delta_i * y + c * z + e * eps,
z ~ N(0, 1) shared by every model (how hard the scene is), eps ~ N(0, 1) its own, c^2 + e^2 = 1,
delta_i = delta + sigma_u * u_i the seed's separation (u ~ N(0, 1)), and the calibrated
probability p = sigmoid(delta_i s - delta_i^2 / 2 + logit(prevalence)). Each repetition draws new
scenes and new seeds. Not a test: nothing is asserted; docs/STATISTICS.md holds its output.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.optimize import brentq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from analysis.inference import (  # noqa: E402
    Influence,
    best_set_of,
    difference_of,
    metric_interval,
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


def ranking_error(n_variants: int, k: int, reps: int, rng, noise: Noise) -> float:
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
        errors += bool(best_set_of(reps_by, "val_loss").worse)
    return errors / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=1000, help="repetitions per figure")
    parser.add_argument("--only", default="typeI,coverage,ranking")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    parts = set(args.only.split(","))
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
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
