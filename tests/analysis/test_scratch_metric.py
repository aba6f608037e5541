"""A new metric is one registry entry plus its function (issue 30): the scratch metric of
tests/analysis/scratch_metric.py, the negative predictive value, is registered by adding ONE entry
to tune_cilp.core.metrics.CLASSIFICATION,

    Metric("val_npv", "NPV", ".3f", "max", bounds=UNIT, scene=npv, ranking_column=6)

(here: the tuple monkeypatched), and no other file knows it. From that entry alone a trainer
reports it, bootstrap.scene_metrics computes it under scene weights, the comparison table shows
its row (label, format, an interval: the default one, the stratified percentile bootstrap, since
inference.SCENE_INTERVALS names no method of its own), the ranking shows its column and, as it
has a goal, can rank by it. Real per-scene predictions folders, read the way the analysis reads
an experiment (tests/helpers.py scene_trial)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, SCENE_LABELS, RayEnv, histories, plugin_env, run_command, scene_trial
from scratch_metric import NPV

import analysis
from analysis import bootstrap, inference
from analysis.cells import estimate_cell, p_cell, paired_cell, spread_cell
from analysis.ranking import quality_table, rank_variants, vs_best_table
from analysis.stats import summarize_variants
from analysis.table import comparison_table, format_table, ranking_records, to_json_dict
from tune_cilp.core import metrics
from tune_cilp.core.metrics import SCENE_METRICS, UNIT, Metric, classification_metrics

HERE = Path(__file__).resolve().parent
POS = SCENE_LABELS == 1


@pytest.fixture
def with_npv(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's one entry, in this process."""
    monkeypatch.setattr(metrics, "CLASSIFICATION", (*metrics.CLASSIFICATION, NPV))


def scores(seed: int, shift: float = 0.0) -> np.ndarray:
    """Probabilities of spheres that rank them high, with wrong calls on both sides (two spheres
    called cubes)."""
    rng = np.random.default_rng(seed)
    p = np.clip(np.where(POS, 0.65, 0.3) + shift + rng.uniform(-0.25, 0.25, len(POS)), 0, 1)
    p[[30, 31]] = [0.3, 0.4]
    return p


def npv_of(proba: np.ndarray) -> float:
    cubes_called = proba < 0.5
    return float(np.sum(cubes_called & ~POS) / np.sum(cubes_called))


def trials(tmp: Path, shifts: dict[str, float], seeds=(1, 2, 3)) -> list:
    """Trials whose result rows hold what a trainer reports (classification_metrics)."""
    return [
        scene_trial(tmp, variant, seed, p, reported=classification_metrics(p, POS))
        for variant, shift in shifts.items()
        for seed in seeds
        for p in [scores(seed + 10 * len(variant), shift)]
    ]


def test_a_trainer_reports_it_and_scene_metrics_computes_it_under_weights(with_npv: None) -> None:
    proba = scores(1)
    assert list(classification_metrics(proba, POS))[-1] == "val_npv"  # after the others
    assert classification_metrics(proba, POS)["val_npv"] == pytest.approx(npv_of(proba))
    counts = bootstrap.stratified_counts(SCENE_LABELS, replicates=30)
    out = bootstrap.scene_metrics(proba, SCENE_LABELS, counts)
    assert list(out) == list(SCENE_METRICS) and SCENE_METRICS[-1] == "val_npv"
    for row, value in zip(counts, out["val_npv"], strict=True):
        repeated = np.repeat(proba, row.astype(int))  # a multiplicity = the scene repeated
        cubes = np.repeat(~POS, row.astype(int))
        assert value == pytest.approx(np.sum((repeated < 0.5) & cubes) / np.sum(repeated < 0.5))


def test_the_comparison_table_shows_its_row_with_label_format_and_interval(
    with_npv: None, tmp_path: Path
) -> None:
    table = comparison_table(summarize_variants(trials(tmp_path, {"concat": 0.0, "add": 0.1})))
    labels = [row[0] for row in table.rows()]
    assert labels[-1] == "NPV" and labels[:-1] == [
        "Validation Loss\n(primary)", "Parameters (M)", "Training Time (s)", "Accuracy",
        "Balanced Accuracy", "F1", "ROC AUC", "AP", "Brier Score",
    ]  # fmt: skip
    row = table.rows()[-1]
    concat = table.scenes.variants["concat-maxpool"].estimates["val_npv"]
    assert concat.value == pytest.approx(np.mean([npv_of(scores(s + 60)) for s in (1, 2, 3)]))
    assert 0 <= concat.low < concat.value < concat.high <= 1
    assert concat.method == "seeds (t, 2 df) + scenes (stratified percentile bootstrap), MOVER"
    assert row[1] == estimate_cell(concat, ".3f", UNIT) and row[1].count(".") == 3  # .3f x 3
    paired = table.paired["val_npv"]  # add - concat on the same scenes, and Welch beside it
    assert row[3:] == [paired_cell(paired, ".3f"), p_cell(paired.p_value),
                       p_cell(table.comparisons["val_npv"].p_value)]  # fmt: skip
    assert math.isfinite(paired.p_value) and table.comparisons["val_npv"].testable
    assert "| NPV" in format_table(table, "grid")
    record = to_json_dict(table)["rows"][-1]
    assert record["metric"] == "NPV" and record["key"] == "val_npv"
    assert record["concat-maxpool value"] == concat.value and record["p_paired"] == paired.p_value


def test_one_seed_gets_the_bootstrap_over_scenes(with_npv: None, tmp_path: Path) -> None:
    table = comparison_table(summarize_variants(trials(tmp_path, {"concat": 0, "add": 0.1}, (1,))))
    e = table.scenes.variants["add-maxpool"].estimates["val_npv"]
    assert e.method == "stratified percentile bootstrap" and e.covers == inference.SCENES_ONLY
    assert table.rows()[-1][2] == estimate_cell(e, ".3f", UNIT)


def test_the_ranking_shows_its_column_and_ranks_by_it(with_npv: None, tmp_path: Path) -> None:
    shifts = {"concat": 0.0, "add": 0.1, "late": -0.1}
    variants = summarize_variants(trials(tmp_path, shifts, (1, 2)))
    table = comparison_table(variants)
    headers, rows = quality_table(table.ranking)
    assert headers[-1] == "NPV" and len(rows[0]) == len(headers)
    name = rows[0][1]
    estimate = table.scenes.variants[name].estimates["val_npv"]
    assert rows[0][-1] == estimate_cell(estimate, ".3f", UNIT)
    record = ranking_records(table.ranking)[0]
    assert (record["val_npv"], record["val_npv low"]) == (estimate.value, estimate.low)
    by_npv = rank_variants(variants, table.scenes, "val_npv")  # it has a goal: it ranks
    assert by_npv.verdict().startswith(f"highest val_npv: {by_npv.best.name}; ")
    means = {v.name: table.scenes.variants[v.name].estimates["val_npv"].value for v in variants}
    assert by_npv.best.name == max(means, key=means.get)
    headers, _ = vs_best_table(by_npv)
    assert headers[1] == "Δ NPV"


def test_without_per_scene_scores_the_seeds_reported_values_are_shown(
    with_npv: None, tmp_path: Path
) -> None:
    found = trials(tmp_path, {"concat": 0.0, "add": 0.1})
    for t in found:
        t.checkpoint = None
    table = comparison_table(summarize_variants(found))
    assert table.scenes is None
    concat = [t.metrics["val_npv"] for t in found if t.config["variant"] == "concat"]
    assert concat == [npv_of(scores(s + 60)) for s in (1, 2, 3)]
    assert table.rows()[-1][:2] == ["NPV", spread_cell(concat, ".3f")]


def test_a_mean_over_scenes_gets_the_t_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    mae = Metric("val_mae", "Mean Absolute Error", ".3f", "min", bounds=UNIT,
                 term=lambda proba, pos: np.abs(proba - pos))  # fmt: skip
    monkeypatch.setattr(metrics, "CLASSIFICATION", (*metrics.CLASSIFICATION, mae))
    proba = scores(4)
    e = inference.metric_interval(proba, SCENE_LABELS, "val_mae")
    assert e.method == "t over scenes" and e.value == pytest.approx(np.mean(np.abs(proba - POS)))
    d = inference.compare_scores(proba, scores(5), SCENE_LABELS, "val_mae")
    assert math.isfinite(d.p_value)


def test_every_metric_gets_an_interval_inside_its_bounds() -> None:
    named = {*inference.SCENE_INTERVALS, *inference.RANK_METRICS}
    assert named <= set(SCENE_METRICS)  # what inference says per metric names real metrics
    proba = np.stack([scores(1), scores(2)])
    for key in SCENE_METRICS:
        for s in (proba[:1], proba):
            e = inference.metric_interval(s, SCENE_LABELS, key)
            low, high = metrics.TRIAL_METRICS[key].bounds
            assert e.has_interval and low <= e.low <= e.value <= e.high <= high, key


@pytest.mark.slow
def test_a_real_run_reports_it_and_its_table_shows_it(
    tiny_raw: Path, tmp_path: Path, ray_env: RayEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every process of the run (the driver, each Ray worker) registers it as it starts, the way
    # each would import the edited file.
    env = plugin_env(tmp_path, "scratch_metric", HERE, ray_env.env)
    storage = tmp_path / "runs"
    cmd = run_command(tiny_raw, storage, "--space", "seed-ablation", "--epochs", "2",
                      "--seeds", "51,52")  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    experiment = storage / "seed-ablation"
    for rows in histories(experiment).values():
        assert [r["epoch"] for r in rows] == [1, 2]
        keys = list(rows[0])
        assert keys.index("val_npv") == keys.index("val_brier") + 1  # reported in its place
    assert "| NPV" in proc.stdout  # the table the run printed

    # `python -m analysis` without the entry: the row is not there; with it, it is.
    assert "NPV" not in analysis.report(str(experiment))
    cli = [sys.executable, "-m", "analysis", str(experiment), "--json", str(tmp_path / "t.json")]
    shown = subprocess.run(cli, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and "| NPV" in shown.stdout
    record = json.loads((tmp_path / "t.json").read_text())["rows"][-1]
    assert record["key"] == "val_npv" and "concat-maxpool value" in record  # from the scenes
    monkeypatch.setattr(metrics, "CLASSIFICATION", (*metrics.CLASSIFICATION, NPV))
    assert "| NPV" in analysis.report(str(experiment))
