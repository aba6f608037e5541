"""The many-variant comparison on known per-seed numbers. Every expected value below was worked
out separately (Welch's t and Satterthwaite's degrees of freedom written out with numpy and
scipy.stats.t, Holm's steps by hand, seed pairs counted by hand), not with the code under test."""

from __future__ import annotations

import math

import pytest

from analysis.ranking import (
    holm,
    interval,
    probability_of_improvement,
    rank_variants,
    ranking_notes,
    ranking_table,
)
from analysis.stats import summarize_trial, summarize_variants
from analysis.table import comparison_table, format_table, majority_class_notes

# Min validation loss per seed (51, 52, 53) of four fusion variants.
LOSSES = {
    "add": [0.013, 0.015, 0.012],
    "concat": [0.010, 0.012, 0.011],
    "hadamard": [0.030, 0.034, 0.029],
    "late": [0.200, 0.180, 0.210],
}
RAW_P = {"add": 0.10206829667318358, "hadamard": 0.002433019152427405, "late": 0.002167508027679215}
# Holm: late 3 x 0.0021675 = 0.0065025; hadamard max(2 x 0.0024330, 0.0065025); add 1 x 0.10207
HOLM_P = {
    "add": 0.10206829667318358,
    "hadamard": 0.006502524083037645,
    "late": 0.006502524083037645,
}
# mean and t(0.975, 2) x s / sqrt(3)
CI = {
    "concat": (0.011, 0.00248413771175033),
    "add": (0.01333333333333333, 0.0037945830335967593),
    "hadamard": (0.031, 0.00657241060772843),
    "late": (0.19666666666666666, 0.0379458303359676),
}
# pairs (concat seed i, other seed j) with concat lower: add 8.5 of 9 (0.012 ties once)
IMPROVEMENT = {"add": 8.5 / 9, "hadamard": 1.0, "late": 1.0}


def variants(losses: dict[str, list[float]]) -> list:
    trials = []
    for variant, values in losses.items():
        for seed, loss in zip((51, 52, 53), values, strict=False):
            config = {"variant": variant, "downsample": "maxpool", "seed": seed}
            row = {"epoch": 1, "val_loss": loss, "val_accuracy": 0.9, "epoch_time_s": 2.0}
            row |= {"val_balanced_accuracy": 0.8, "val_f1": 0.7, "num_parameters": 1_914_501}
            trials.append(
                summarize_trial(f"{variant}{seed}", config, [{**row, "peak_memory_mb": 900}])
            )
    return summarize_variants(trials)


def test_ranking_matches_the_independent_computation() -> None:
    ranking = rank_variants(variants(LOSSES))
    names = [r.variant.name for r in ranking.rows]
    assert names == ["concat-maxpool", "add-maxpool", "hadamard-maxpool", "late-maxpool"]
    for row in ranking.rows[1:]:
        variant = row.variant.name.split("-")[0]
        assert row.vs_best.p_value == pytest.approx(RAW_P[variant], rel=1e-9)
        assert row.p_holm == pytest.approx(HOLM_P[variant], rel=1e-9)
        assert row.p_improvement == pytest.approx(IMPROVEMENT[variant])
        assert row.vs_best.difference == pytest.approx(CI[variant][0] - CI["concat"][0])
    for row in ranking.rows:
        iv = interval(row.variant.values("val_loss"))
        mean, half = CI[row.variant.name.split("-")[0]]
        assert (iv.mean, iv.half_width, iv.n) == (pytest.approx(mean), pytest.approx(half), 3)
    assert ranking.indistinguishable == ["add-maxpool"]
    assert ranking.worse == ["hadamard-maxpool", "late-maxpool"]
    assert ranking.verdict().startswith("best val_loss: concat-maxpool; statistically")


def test_ranking_table_shows_intervals_and_the_comparison_with_the_best() -> None:
    headers, rows = ranking_table(rank_variants(variants(LOSSES)))
    assert headers[:3] == ["Rank", "Variant", "Validation Loss"]
    assert headers[-3:] == ["Δ vs best", "p (Holm)", "P(best < it)"]
    assert rows[0][:3] == ["1", "concat-maxpool", "0.011 ± 0.002484 (n=3)"]
    assert rows[0][-3:] == ["(best)", "", ""]
    assert rows[3][-3:] == ["+0.1857", "0.0065", "1.00"]
    assert "Peak Memory (MiB)" in headers and rows[0][headers.index("Peak Memory (MiB)")] == (
        "900 ± 0 (n=3)"
    )


def test_one_seed_per_variant_gives_the_ranking_and_how_to_get_the_test() -> None:
    single = {k: v[:1] for k, v in LOSSES.items()}
    ranking = rank_variants(variants(single))
    assert [r.variant.name for r in ranking.rows][0] == "concat-maxpool"
    assert not ranking.testable and not ranking.indistinguishable and not ranking.worse
    assert "--seeds" in ranking.verdict() and "--seeds" in ranking_notes(ranking)[-1]
    assert ranking_table(ranking)[1][0][2] == "0.01 (n=1)"


def test_holm_and_improvement_edge_cases() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.5, math.nan])  # an untestable comparison is not counted
    assert adjusted[0] == 0.5 and math.isnan(adjusted[1])
    assert holm([0.6, 0.9]) == [1.0, 1.0]  # capped at 1
    assert probability_of_improvement([1.0, 2.0], [1.0, 2.0]) == 0.5  # all ties or mirrored
    assert probability_of_improvement([0.1], [0.2, 0.05]) == 0.5


def _trial(name: str, seed: int, accuracy: float, balanced: float, rate: float):
    row = {"epoch": 1, "val_loss": 0.2, "val_accuracy": accuracy, "epoch_time_s": 1.0}
    row |= {"val_balanced_accuracy": balanced, "val_f1": 0.0, "val_majority_rate": rate}
    return summarize_trial(name, {"variant": name, "downsample": "stride", "seed": seed}, [row])


def test_majority_class_note_for_an_all_cubes_model_only() -> None:
    trials = [_trial("concat", s, 0.93, 0.50, 0.93) for s in (1, 2)]  # predicts cubes only
    trials += [_trial("add", s, 0.99, 0.97, 0.93) for s in (1, 2)]  # a good model
    trials += [_trial("late", s, 0.80, 0.55, 0.93) for s in (1, 2)]  # bad, but not majority
    notes = majority_class_notes(summarize_variants(trials))
    assert notes == [
        "concat-stride predicts mostly the majority class: balanced accuracy 0.50 at 0.93 "
        "accuracy, majority rate 0.93"
    ]


def test_more_than_two_variants_print_the_ranking_and_its_verdict() -> None:
    text = format_table(comparison_table(variants(LOSSES)), "github")
    header = text.splitlines()[0]
    assert header.startswith("| Rank") and "Validation Loss" in header and "p (Holm)" in header
    assert "Verdict: best val_loss: concat-maxpool" in text
    assert "(Holm-corrected Welch p >= 0.05): add-maxpool" in " ".join(text.split())
