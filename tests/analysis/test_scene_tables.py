"""Tables built from per-scene scores: real checkpoint folders (ray.tune.Checkpoint) holding the
predictions.json a trial writes, read the way the analysis reads an experiment. Values are checked
against sklearn, tests against their definitions; each fallback says why in one line."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import SCENE_IDS, SCENE_LABELS
from helpers import scene_trial as trial
from ray.tune import Checkpoint
from sklearn.metrics import log_loss, roc_auc_score

from analysis.plots import write_plots
from analysis.scenes import MIXED, SCENES_ONLY, read_predictions, scene_stats
from analysis.stats import distinct_seeds, summarize_trial, summarize_variants
from analysis.table import comparison_table, format_table, to_json_dict, write_csv
from tune_cilp.core.predictions import (
    PREDICTIONS_FILE,
    HeldOut,
    Predictions,
    Scores,
    write_predictions,
)

LABELS, IDS = SCENE_LABELS, SCENE_IDS
CUBES = np.full(len(LABELS), 0.1)  # says "cubes" to everything, spheres ranked like cubes


def good(seed: int) -> np.ndarray:
    """Scores that rank spheres high (two spheres under 0.5, one cube over), jittered by seed."""
    rng = np.random.default_rng(seed)
    p = np.where(LABELS == 1, 0.8, 0.2) + rng.uniform(-0.05, 0.05, len(LABELS))
    p[[30, 31]] = [0.4, 0.45]
    p[0] = 0.6
    return p


def test_read_predictions_says_why_there_is_no_record(tmp_path: Path) -> None:
    ok = trial(tmp_path, "concat", 1, good(1))
    assert isinstance(read_predictions(ok), Predictions)
    bare = summarize_trial("t", {"seed": 1}, [{"epoch": 1, "val_loss": 0.3}])
    assert read_predictions(bare) == "no checkpoint"
    old = tmp_path / "old"
    old.mkdir()
    bare.checkpoint = Checkpoint(str(old))
    assert read_predictions(bare).startswith(f"no {PREDICTIONS_FILE} (made before")
    (old / PREDICTIONS_FILE).write_text('{"format": 1, "ids": [')
    assert "not a valid predictions record" in read_predictions(bare)
    other = Predictions(IDS, LABELS, Scores(3, CUBES), Scores(4, CUBES))
    write_predictions(old, other)
    assert read_predictions(bare) == "best-epoch scores stored for epoch 3, its results' best is 1"
    write_predictions(old, Predictions(IDS, LABELS, None, Scores(4, CUBES)))
    assert read_predictions(bare).startswith("best-epoch scores stored for none")


def test_scene_estimates_equal_sklearn(tmp_path: Path) -> None:
    trials = [trial(tmp_path, "concat", s, good(s)) for s in (51, 52, 53)]
    trials.append(trial(tmp_path, "add", 9, CUBES))
    stats, notes = scene_stats(summarize_variants(trials))
    assert notes == [] and stats is not None
    concat, add = stats.variants["concat-maxpool"], stats.variants["add-maxpool"]
    assert concat.seeds == [51, 52, 53] and stats.coverage == MIXED
    e = concat.estimates["val_roc_auc"]
    assert e.value == pytest.approx(np.mean([roc_auc_score(LABELS, good(s)) for s in (51, 52, 53)]))
    assert e.has_interval and 0 <= e.low <= e.value <= e.high <= 1
    loss = concat.estimates["val_loss"]
    assert loss.value == pytest.approx(np.mean([log_loss(LABELS, good(s)) for s in (51, 52, 53)]))
    # "cubes" everywhere: F1 is 0 (no sphere found) with Wilson's bound on 0 of 5 mapped to F1;
    # the accuracy 30/35 gets its Clopper-Pearson interval
    assert add.estimates["val_roc_auc"].value == 0.5
    assert add.estimates["val_f1"].low == 0 and add.estimates["val_f1"].high == pytest.approx(
        2 * 0.4345 / 1.4345, abs=1e-3
    )
    assert add.estimates["val_accuracy"].low == pytest.approx(0.6974, abs=1e-4)
    assert "on 30 cubes and 5 spheres (validation)" in stats.note()


def test_other_scenes_or_missing_records_fall_back_with_a_note(tmp_path: Path) -> None:
    shuffled = IDS[::-1].copy()
    trials = [trial(tmp_path, "concat", 1, good(1)), trial(tmp_path, "add", 1, CUBES, shuffled)]
    stats, notes = scene_stats(summarize_variants(trials))
    assert stats is None and "add-maxpool seed=1 was scored on other scenes" in notes[0]
    trials[1].checkpoint = None
    table = comparison_table(summarize_variants(trials))
    assert table.scenes is None and "p" not in table.headers
    assert any(n.startswith("No per-scene intervals or paired tests: no checkpoint: 1 trial(s)")
               for n in table.notes)  # fmt: skip
    assert "single seed" in table.verdict or "--seeds" in table.verdict


def test_two_variants_one_seed_each_get_the_paired_tests(tmp_path: Path) -> None:
    trials = [trial(tmp_path, "concat", 1, good(1)), trial(tmp_path, "add", 1, CUBES)]
    table = comparison_table(summarize_variants(trials))
    assert table.headers[-2:] == ["p", "p check"]
    assert table.scenes.coverage == SCENES_ONLY
    # concat is wrong on scenes 0, 30 and 31, add on all 5 spheres: only concat is right on
    # spheres 32-34, only add on cube 0.
    assert table.mcnemar[1:] == (3, 1)
    assert math.isfinite(table.delong)
    assert table.verdict.startswith("concat-maxpool has the lower val_loss (add-maxpool - ")
    assert "over validation scenes only (these trained models)" in table.verdict
    assert "says nothing about the architectures (run with --seeds" in table.verdict
    assert "(n=1 vs 1 seeds)" in table.verdict
    text = " ".join(format_table(table, "grid").split())  # wrapped footer
    assert "3 scenes only concat-maxpool gets right at 0.5, 1 only add-maxpool" in text
    assert "No-skill reference: scoring every scene at its sphere rate 0.143" in text


def test_two_variants_with_seeds_get_welch_beside_the_bootstrap(tmp_path: Path) -> None:
    trials = [trial(tmp_path, "concat", s, good(s)) for s in (1, 2, 3)]
    trials += [trial(tmp_path, "add", s, np.clip(good(s) * 0.5 + 0.2, 0, 1)) for s in (1, 2, 3)]
    table = comparison_table(summarize_variants(trials))
    assert table.headers[-2:] == ["p", "p check"] and table.second_test == "Welch"
    assert "over training seeds and validation scenes" in table.verdict
    assert "(n=3 vs 3 seeds)" in table.verdict and "architectures" not in table.verdict


def test_identical_scores_are_no_difference(tmp_path: Path) -> None:
    trials = [trial(tmp_path, "concat", 1, good(1)), trial(tmp_path, "add", 1, good(1))]
    table = comparison_table(summarize_variants(trials))
    assert table.verdict.startswith("no difference in val_loss: the two score every scene alike")
    assert table.mcnemar == (1.0, 0, 0)
    trials.append(trial(tmp_path, "late", 1, CUBES))
    ranking = comparison_table(summarize_variants(trials)).ranking
    assert set(ranking.confidence_set) == {"concat-maxpool", "add-maxpool"}
    assert list(ranking.worse) == ["late-maxpool"]
    assert math.isnan(ranking.rows[1].paired["val_loss"].p_value)


def test_ranking_with_long_names_fits_120_columns_and_writes_every_column(tmp_path: Path) -> None:
    trials = []
    for i, (variant, scale) in enumerate([("concat", 1.0), ("add", 0.8), ("late", 0.5)]):
        lr, wd = 10 ** (-3 - i / 7), 10 ** (-5 + i / 3)
        for s in (1, 2):
            p = np.clip(0.5 + (good(s) - 0.5) * scale, 0, 1)
            trials.append(trial(tmp_path, variant, s, p, lr=lr, weight_decay=wd))
    table = comparison_table(summarize_variants(trials))
    assert table.ranking is not None
    text = format_table(table, "grid")
    assert "| Rank" in text and "Verdict: lowest val_loss: concat-maxpool lr=" in text
    assert max(len(line) for line in text.splitlines() if line.startswith(("+", "|"))) <= 120
    github = format_table(table, "github")  # one-line cells: a name joined back whole
    rows = [line for line in github.splitlines() if line.startswith("|")]
    assert "| concat-maxpool lr=" in github and not any("= " in line for line in rows)
    out = tmp_path / "rank.csv"
    write_csv(table, str(out))
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["rank"] for r in rows] == ["1", "2", "3"] and rows[0]["name"].startswith("concat")
    for column in ("val_roc_auc low", "Δ val_loss high", "p_all_pairs_holm", "p_welch_holm"):
        assert column in rows[0]
    data = json.loads(json.dumps(to_json_dict(table)))
    assert data["ranking"][1]["p_all_pairs_holm"] is not None
    assert data["ranking"][0]["Δ val_loss"] is None  # the best against itself: nothing


def test_repeated_configuration_and_seed_counts_once(tmp_path: Path) -> None:
    trials = [trial(tmp_path, "concat", 1, good(1)), trial(tmp_path, "concat", 1, good(1))]
    trials[1].trial_id = "concat_1_again"
    trials.append(trial(tmp_path, "add", 1, CUBES))
    kept, notes = distinct_seeds(trials)
    assert len(kept) == 2 and "concat_1_again (seed=1)" in notes[0]
    assert "n counts distinct seeds" in notes[0]


@pytest.mark.parametrize("variants", [("concat", "add"), ("concat", "add", "late")])
def test_plots_are_written(tmp_path: Path, variants: tuple[str, ...]) -> None:
    pred = tmp_path / "pred"
    pred.mkdir()
    trials = [trial(pred, v, s, good(s + i)) for i, v in enumerate(variants) for s in (1, 2)]
    paths = write_plots(comparison_table(summarize_variants(trials)), str(tmp_path / "img"))
    names = {Path(p).name for p in paths}
    expected = {"curves.png", "final_metrics.png", "paired_differences.png", "wrong_scenes.png",
                "reliability.png"}  # fmt: skip
    assert names == expected | ({"ranking.png"} if len(variants) > 2 else set())
    for p in paths:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_with_a_test_split_every_number_and_the_verdict_come_from_test(tmp_path: Path) -> None:
    test_ids = np.array(
        [f"cubes/{i:04d}" for i in range(100, 120)] + [f"spheres/{i:04d}" for i in range(100, 105)]
    )
    test_labels = np.array([0] * 20 + [1] * 5)

    def with_test(variant: str, seed: int, val: np.ndarray, test: np.ndarray):
        t = trial(tmp_path, variant, seed, val)
        record = Predictions(IDS, LABELS, Scores(1, val), Scores(1, val),
                             HeldOut(1, test_ids, test_labels, test))  # fmt: skip
        write_predictions(t.checkpoint.path, record)
        return t

    good_test = np.where(test_labels == 1, 0.9, 0.1)
    bad_test = np.full(25, 0.3)
    trials = [with_test("concat", 1, CUBES, good_test), with_test("add", 1, good(1), bad_test)]
    table = comparison_table(summarize_variants(trials))
    assert table.scenes.split == "test" and list(table.scenes.ids) == list(test_ids)
    concat = table.scenes.variants["concat-maxpool"].estimates["val_roc_auc"]
    assert concat.value == 1.0  # the test scores, not the all-cubes validation ones
    assert "the held-out test scores (epochs chosen on validation)" in table.verdict
    assert table.verdict.startswith("concat-maxpool has the lower val_loss")
    text = " ".join(format_table(table, "grid").split())
    assert "(held-out test)" in text and "nothing here was chosen on these scenes" in text
    # a table mixing a test split with none is refused, not silently mixed
    trials.append(trial(tmp_path, "late", 1, good(2)))
    stats, notes = scene_stats(summarize_variants(trials))
    assert stats is None and "scored on other scenes" in notes[0]


def test_seeds_with_bit_identical_scores_count_once(tmp_path: Path) -> None:
    trials = [trial(tmp_path, "concat", s, good(1)) for s in (1, 2)]
    trials += [trial(tmp_path, "add", s, good(s)) for s in (1, 2)]
    stats, notes = scene_stats(summarize_variants(trials))
    assert stats.variants["concat-maxpool"].seeds == [1]
    assert stats.variants["add-maxpool"].seeds == [1, 2]
    assert notes == [
        "concat-maxpool: seed(s) 2 gave bit-identical scores to another seed, so they are the "
        "same run and are counted once."
    ]


def test_the_final_plot_takes_seeds_whose_mean_rounds_past_their_spread() -> None:
    # Three seeds with the same loss: their mean can differ from it by a rounding, and
    # matplotlib refuses the negative bar length that gives (seen on the fusion race's plots).
    from analysis.plots import _bar_spread

    values = [0.1, 0.1, 0.1]
    mean = sum(values) / len(values)
    assert mean != 0.1  # the premise: 0.30000000000000004 / 3
    spread = _bar_spread([[mean - min(values), float("nan")], [max(values) - mean, 0.2]])
    assert (spread >= 0).all() and spread[0][1] == 0.0 and spread[1][1] == 0.2
