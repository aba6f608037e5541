"""The many-variant comparison on known per-seed numbers, without per-scene scores (the fallback
for an experiment from before they were stored: Welch's t-test across seeds for every pair,
Holm-corrected over all pairs). Every expected value below was worked out separately (Welch's t
and Satterthwaite's degrees of freedom written out with numpy and scipy.stats.t, scipy's
ttest_ind and statsmodels' Holm for the six pairs, seed pairs counted by hand), not with the code
under test. The per-scene ranking: tests/analysis/test_scene_tables.py and
tests/analysis/test_inference.py."""

from __future__ import annotations

import math

import pytest
from scipy.stats import ttest_ind
from statsmodels.stats.multitest import multipletests

from analysis.bootstrap import holm
from analysis.cells import p_cell
from analysis.inference import improvement_probability
from analysis.ranking import (
    quality_table,
    rank_variants,
    ranking_notes,
    vs_best_table,
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
MEAN = {"concat": 0.011, "add": 0.04 / 3, "hadamard": 0.031, "late": 0.59 / 3}
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


def _all_pairs_holm() -> dict[tuple[str, str], float]:
    order = ["concat", "add", "hadamard", "late"]
    pairs = [(x, y) for i, x in enumerate(order) for y in order[i + 1 :]]
    raw = [ttest_ind(LOSSES[y], LOSSES[x], equal_var=False).pvalue for x, y in pairs]
    return dict(zip(pairs, multipletests(raw, method="holm")[1], strict=True))


def test_ranking_matches_the_independent_computation() -> None:
    ranking = rank_variants(variants(LOSSES))
    names = [r.variant.name for r in ranking.rows]
    assert names == ["concat-maxpool", "add-maxpool", "hadamard-maxpool", "late-maxpool"]
    all_pairs = _all_pairs_holm()
    for row in ranking.rows[1:]:
        variant = row.variant.name.split("-")[0]
        assert row.welch.p_value == pytest.approx(RAW_P[variant], rel=1e-9)
        assert row.p_second_holm == pytest.approx(HOLM_P[variant], rel=1e-9)
        assert row.p_holm == pytest.approx(all_pairs[("concat", variant)], rel=1e-9)
        assert row.improvement.value == pytest.approx(IMPROVEMENT[variant])
        assert 0 <= row.improvement.low <= row.improvement.value <= row.improvement.high <= 1
        assert row.welch.difference == pytest.approx(MEAN[variant] - MEAN["concat"])
        assert not row.paired  # no per-scene scores
    for row in ranking.rows:  # no interval: three seeds' t-interval on a bounded metric misleads
        estimate = row.quality["val_loss"]
        assert estimate.value == pytest.approx(MEAN[row.variant.name.split("-")[0]])
        assert not estimate.has_interval
    assert ranking.scenes is None and ranking.second_test == "Welch"
    # Over all six pairs, Holm keeps five below 0.05: only concat vs add is not shown to differ
    shown = {pair for pair, p in all_pairs.items() if p < 0.05}
    assert shown == {("concat", "hadamard"), ("concat", "late"), ("add", "late"),
                     ("add", "hadamard"), ("hadamard", "late")}  # fmt: skip
    assert ranking.confidence_set == ["concat-maxpool", "add-maxpool"]
    assert list(ranking.worse) == ["hadamard-maxpool", "late-maxpool"]
    assert ranking.verdict().startswith("lowest val_loss: concat-maxpool; 95% confidence set")
    assert "Welch's t-test across seeds, all pairs, Holm-corrected" in ranking.verdict()
    assert "not shown to differ from the best, which is not equivalence" in ranking.verdict()


def test_ranking_tables_show_the_means_and_the_comparison_with_the_best() -> None:
    ranking = rank_variants(variants(LOSSES))
    headers, rows = quality_table(ranking)
    assert headers[:3] == ["Rank", "Variant", "Validation\nLoss"]
    assert [row[0] for row in rows] == ["1", "2", "3", "4"]
    assert rows[0][1:3] == ["concat-maxpool", "0.011"]
    headers, rows = vs_best_table(ranking)
    assert headers[-4:] == [
        "p all pairs\n(Holm)",
        "p Welch\n(Holm)",
        "P(first)",
        "P(best\nbeats it)",
    ]
    assert rows[0][:2] == ["concat-maxpool", "(best)"] and rows[0][2:] == ["", "", "", "n/a", ""]
    late_all_pairs = p_cell(_all_pairs_holm()[("concat", "late")])
    assert rows[3][1] == "+0.1857" and rows[3][-4:-1] == [late_all_pairs, "0.0065", "n/a"]
    assert rows[3][-1].startswith("1.00\n[")


def test_one_seed_per_variant_gives_the_ranking_and_how_to_get_the_test() -> None:
    single = {k: v[:1] for k, v in LOSSES.items()}
    ranking = rank_variants(variants(single))
    assert [r.variant.name for r in ranking.rows][0] == "concat-maxpool"
    assert not ranking.testable and not ranking.confidence_set and not ranking.worse
    assert "--seeds" in ranking.verdict() and "--seeds" in ranking_notes(ranking)[-1]
    assert quality_table(ranking)[1][0][2] == "0.01"
    assert math.isnan(ranking.rows[1].improvement.value)  # one seed each: a 0/1 says nothing


def test_holm_and_improvement_edge_cases() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.5, math.nan])  # an untestable comparison is not counted
    assert adjusted[0] == 0.5 and math.isnan(adjusted[1])
    assert holm([0.6, 0.9]) == [1.0, 1.0]  # capped at 1
    assert improvement_probability([1.0, 2.0], [1.0, 2.0], "min").value == 0.5  # ties, mirrored
    assert math.isnan(improvement_probability([0.1], [0.2, 0.05], "min").value)  # one seed
    assert improvement_probability([0.9, 0.8], [0.5, 0.6], "max").value == 1.0


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


def test_majority_rate_not_reported_comes_from_the_fallback() -> None:
    # Trials that did not report the rate (e.g. CILP classifiers made before they did): the
    # table passes the rate of the stored per-scene labels instead.
    trials = [_trial("concat", s, 0.93, 0.50, math.nan) for s in (1, 2)]
    assert majority_class_notes(summarize_variants(trials)) == []
    (note,) = majority_class_notes(summarize_variants(trials), fallback=164 / 179)
    assert note.endswith("balanced accuracy 0.50 at 0.93 accuracy, majority rate 0.92")


def test_a_verdict_whose_winner_says_cubes_everywhere_says_so() -> None:
    def trial(name: str, seed: int, loss: float, balanced: float):
        result = _trial(name, seed, 0.93 if balanced == 0.5 else 0.97, balanced, 0.93)
        result.metrics["val_loss"] = loss
        return result

    collapsed = [trial("concat", s, 0.25, 0.50) for s in (1, 2, 3)]  # lowest loss, all cubes
    for others in (["add"], ["add", "late"]):  # the two-variant verdict and the ranking's
        trials = collapsed + [trial(n, s, 0.4 + s / 100, 0.9) for n in others for s in (1, 2, 3)]
        table = comparison_table(summarize_variants(trials))
        assert "caution: concat-stride predicts mostly the majority class" in table.verdict
        printed = " ".join(format_table(table, "github").split())  # the printed verdict too
        assert "caution: concat-stride predicts mostly the majority class" in printed
    trials = collapsed + [trial("add", s, 0.1 + s / 100, 0.9) for s in (1, 2, 3)]
    assert "caution" not in comparison_table(summarize_variants(trials)).verdict
    trials = collapsed + [trial("add", s, 0.3 + s / 100, 0.5) for s in (1, 2, 3)]
    verdict = comparison_table(summarize_variants(trials)).verdict
    assert "caution: every variant predicts mostly the majority class" in verdict


def test_more_than_two_variants_print_the_ranking_and_its_verdict() -> None:
    table = comparison_table(variants(LOSSES))
    text = format_table(table, "github")
    lines = text.splitlines()
    assert lines[0].startswith("Quality") and lines[1].startswith("| Rank   | Variant")
    assert "Validation Loss" in lines[1] and "Against the best" in text and "Cost" in text
    assert "p Welch (Holm)" in text and "Verdict: lowest val_loss: concat-maxpool" in text
    flat = " ".join(text.split())
    assert "95% confidence set for the best: concat-maxpool, add-maxpool;" in flat
    assert "No per-scene intervals or paired tests: no checkpoint: 12 trial(s)" in flat
    grid = format_table(table, "grid")
    assert max(len(line) for line in grid.splitlines()) <= 120
