"""A validation split of one class only (the seed's data is 93 % cubes: a small or unlucky split
holds no sphere) is said plainly: one note names the class counts and the metrics it leaves
undefined (from the registry's Metric.needs) or computed on one class (Metric.per_class), their
rows are tagged, an undefined one shows n/a, and no verdict rests on either kind. Fast: real
predictions.json folders read the way the analysis reads an experiment; slow: a real tiny run
whose validation split holds cubes only, then `python -m analysis` on it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, SCENE_IDS, SCENE_LABELS, RayEnv, run_command, scene_trial

from analysis import inference
from analysis.cilp_table import CilpTable, classifier_notes
from analysis.one_class import OneClass, one_class_of
from analysis.ranking import quality_table, vs_best_table
from analysis.stats import (
    TrialResult,
    VariantSummary,
    compare,
    summarize,
    summarize_trial,
    summarize_variants,
)
from analysis.table import comparison_table, format_table, to_json_dict
from tune_cilp.cilp.stages import cilp_rows
from tune_cilp.core import metrics
from tune_cilp.core.metrics import (
    CLASSIFICATION,
    UNIT,
    Metric,
    classification_metrics,
)
from tune_cilp.core.predictions import HeldOut, Predictions, Scores, write_predictions
from tune_cilp.core.scoring import ScoredScenes
from tune_cilp.data import generate_raw, load_arrays
from tune_cilp.data.split import split_mask

CUBES, SPHERES = 0, 1
N = 12  # scenes in the one-class split
VARIANTS = ("concat", "add", "late", "hadamard")
# What the registry must say, worked out from each metric's definition (docs/STATISTICS.md):
# ROC AUC and AP rank spheres against cubes; F1 of spheres has no recall without spheres;
# balanced accuracy (and F1, with spheres only) is then a figure of the one class.
UNDEFINED = {
    CUBES: {"val_f1", "val_roc_auc", "val_average_precision"},
    SPHERES: {"val_roc_auc", "val_average_precision"},
}
ONE_SIDED = {CUBES: {"val_balanced_accuracy"}, SPHERES: {"val_balanced_accuracy", "val_f1"}}


def one_class_trial(tmp: Path, variant: str, seed: int, proba: np.ndarray, label: int):
    """A TrialResult of N scenes all labelled `label`, its scores in a real predictions.json
    beside its checkpoint and its result row what a trainer reports for them."""
    from ray.tune import Checkpoint

    labels = np.full(len(proba), label, np.int64)
    ids = np.array([f"{('cubes', 'spheres')[label]}/{i:04d}" for i in range(len(proba))])
    folder = tmp / f"{variant}-{seed}"
    folder.mkdir()
    write_predictions(folder, Predictions(ids, labels, Scores(1, proba), Scores(1, proba)))
    row = {"epoch": 1, "epoch_time_s": 2.0, "num_parameters": 1000, "val_majority_rate": 1.0}
    row |= classification_metrics(proba, labels == 1)
    config = {"variant": variant, "downsample": "maxpool", "seed": seed}
    return summarize_trial(f"{variant}_{seed}", config, [row], checkpoint=Checkpoint(str(folder)))


def one_class_variants(tmp: Path, label: int, count: int = 2, seeds=(51,)) -> list:
    """`count` variants scored on N scenes of class `label`, some scenes called wrong."""
    rng = np.random.default_rng(label)
    trials = []
    for variant in VARIANTS[:count]:
        for seed in seeds:
            # Mostly right for the class there is (probability of spheres low for cubes), with
            # a few scenes on the wrong side of 0.5.
            right = rng.uniform(0.0, 0.45, N) if label == CUBES else rng.uniform(0.55, 1.0, N)
            right[:2] = 1 - right[:2]
            trials.append(one_class_trial(tmp, variant, seed, right, label))
    return summarize_variants(trials)


def flat(text: str) -> str:
    """`text` with its wrapping undone: a note is one logical line however it is wrapped."""
    return " ".join(text.split())


# --- the registry: which metrics one class leaves undefined or one-sided ----------------------


@pytest.mark.parametrize("label", [CUBES, SPHERES])
def test_the_registry_says_which_metrics_one_class_leaves(label: int) -> None:
    one = OneClass(label, N)
    assert set(one.undefined) == UNDEFINED[label]
    assert set(one.one_sided) == ONE_SIDED[label]


@pytest.mark.parametrize("label", [CUBES, SPHERES])
def test_what_the_registry_says_holds_for_its_functions(label: int) -> None:
    """An undefined metric is NaN or one constant whatever the scores; a one-sided one is the
    class's own figure (balanced accuracy: its recall); the rest depend on the scores."""
    rng = np.random.default_rng(7)
    pos = np.full(N, label == SPHERES)
    one = OneClass(label, N)
    for m in CLASSIFICATION:
        values = []
        for _ in range(20):
            proba = rng.uniform(0, 1, N)
            values.append(float(m.values(ScoredScenes(proba, pos))[0]))
            if m.key == "val_balanced_accuracy":  # the recall of the class there is
                assert values[-1] == pytest.approx(np.mean((proba >= 0.5) == pos))
        distinct = {v for v in values if not np.isnan(v)}
        if m.key in one.undefined:
            assert len(distinct) <= 1, m.key  # no information about the model
        else:
            assert len(distinct) > 1, m.key


def test_a_metric_added_to_the_registry_is_named_by_its_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The note's lists come from the registry: a scratch metric that needs cubes is undefined
    on spheres only, one that is per class is computed on cubes alone."""
    needs_cubes = Metric("val_npv", "NPV", ".3f", "max", bounds=UNIT, needs=(CUBES,))
    per_class = Metric("val_sphere_recall", "Recall", ".3f", "max", bounds=UNIT, per_class=True)
    monkeypatch.setattr(metrics, "CLASSIFICATION", (*CLASSIFICATION, needs_cubes, per_class))
    spheres, cubes = OneClass(SPHERES, N), OneClass(CUBES, N)
    assert "val_npv" in spheres.undefined and "val_npv" not in cubes.undefined
    assert "val_sphere_recall" in cubes.one_sided
    assert "ROC AUC, AP and NPV are undefined there (they need cubes" in spheres.note()
    assert "Balanced Accuracy and Recall are computed on cubes alone" in cubes.note()


# --- the comparison table: two variants ---------------------------------------------------------


def test_cubes_only_two_variants(tmp_path: Path) -> None:
    table = comparison_table(one_class_variants(tmp_path, CUBES))
    text = format_table(table)
    note = (
        f"The validation split holds {N} cubes and 0 spheres: F1, ROC AUC and AP are undefined "
        "there (they need spheres; shown as n/a), and Balanced Accuracy is computed on cubes "
        "alone"
    )
    assert flat(text).count(note) == 1
    rows = {r[0]: r for r in table.rows()}
    assert rows["Balanced Accuracy\n(cubes only)"][1] != "n/a"  # a number, cautioned
    for label in ("F1", "ROC AUC", "AP"):  # F1's 0 is scikit-learn's convention: no number
        assert rows[f"{label}\n(undefined)"][1:4] == ["n/a", "n/a", "n/a"]
    assert "Validation Loss\n(primary)" in rows and "Accuracy" in rows  # defined: untagged
    # The verdict is on the loss (defined) and says what one class leaves of it.
    assert table.verdict.startswith("concat-maxpool and add-maxpool")
    assert flat(table.verdict).endswith(
        f"caution: the validation split holds cubes only ({N} cubes and 0 spheres), so this "
        "val_loss says how each variant scores cubes, not whether it tells cubes and spheres apart"
    )
    assert "DeLong" not in text  # no ROC AUC test to name
    record = to_json_dict(table)["one_class"]
    assert record == {
        "class": "cubes",
        "scenes": N,
        "split": "validation",
        "undefined": ["val_f1", "val_roc_auc", "val_average_precision"],
        "one_sided": ["val_balanced_accuracy"],
    }


def test_spheres_only_two_variants(tmp_path: Path) -> None:
    table = comparison_table(one_class_variants(tmp_path, SPHERES))
    text = flat(format_table(table))
    assert (
        f"The validation split holds 0 cubes and {N} spheres: ROC AUC and AP are undefined there "
        "(they need cubes; shown as n/a), and Balanced Accuracy and F1 are computed on spheres "
        "alone"
    ) in text
    rows = {r[0]: r for r in table.rows()}
    f1 = rows["F1\n(spheres only)"][1]  # precision is 1 with no cube to call a sphere
    assert f1.split("\n")[0] == format(2 * (10 / 12) / (1 + 10 / 12), ".3f")
    assert "Balanced Accuracy\n(spheres only)" in rows and "ROC AUC\n(undefined)" in rows


@pytest.mark.parametrize(
    ("label", "primary", "why"),
    [
        (CUBES, "val_roc_auc", "it is undefined"),
        (CUBES, "val_f1", "it is undefined"),
        (CUBES, "val_balanced_accuracy", "it describes cubes alone"),
        (SPHERES, "val_f1", "it describes spheres alone"),
    ],
)
def test_no_verdict_rests_on_an_undefined_or_one_sided_primary(
    tmp_path: Path, label: int, primary: str, why: str
) -> None:
    table = comparison_table(one_class_variants(tmp_path, label), primary=primary)
    counts = f"{N} cubes and 0 spheres" if label == CUBES else f"0 cubes and {N} spheres"
    assert table.verdict == (
        f"no verdict on {primary}: {why} on this validation split ({counts}); the space "
        "declared it before the run, so no other metric stands in for it"
    )
    text = format_table(table)
    assert len([n for n in text.splitlines() if n.startswith("Verdict: ")]) == 1
    assert flat(text).endswith(f"Verdict: {table.verdict}")


# --- more than two variants: the ranking ---------------------------------------------------------


def test_a_ranking_on_the_loss_tags_its_columns(tmp_path: Path) -> None:
    table = comparison_table(one_class_variants(tmp_path, CUBES, count=3))
    assert table.ranking is not None
    headers, rows = quality_table(table.ranking)
    assert "Balanced\nAccuracy\n(cubes only)" in headers and "ROC AUC\n(undefined)" in headers
    auc = headers.index("ROC AUC\n(undefined)")
    assert {r[auc] for r in rows} == {"n/a"}
    text = flat(format_table(table))
    assert text.count(f"The validation split holds {N} cubes and 0 spheres") == 1
    assert "Δ ROC AUC\n(undefined)" in vs_best_table(table.ranking)[0]
    assert table.verdict.startswith("lowest val_loss: ")
    assert "caution: the validation split holds cubes only" in table.verdict


def test_no_ranking_on_an_undefined_primary(tmp_path: Path) -> None:
    """Four variants, the space's primary ROC AUC, cubes only: no ranking is built (nothing to
    order them by); every variant is a column of the plain table, and the verdict refuses."""
    table = comparison_table(one_class_variants(tmp_path, CUBES, count=4), primary="val_roc_auc")
    assert table.ranking is None
    assert table.headers == ["Metric", *(f"{v}-maxpool\n(1 seed)" for v in VARIANTS)]
    assert table.verdict.startswith("no verdict on val_roc_auc: it is undefined")
    text = format_table(table)
    assert "highest val_roc_auc" not in text and "Rank" not in text
    assert "Intervals [95%] over validation scenes only" in flat(text)  # still said


def test_a_held_out_test_split_of_one_class_is_named(tmp_path: Path) -> None:
    """With --test-fraction every number is the test scenes': their split is the one named."""
    from ray.tune import Checkpoint

    rng = np.random.default_rng(5)
    trials = []
    for variant in VARIANTS[:2]:
        folder = tmp_path / variant
        folder.mkdir()
        proba = rng.uniform(0, 1, len(SCENE_LABELS))
        test_ids = np.array([f"cubes/{100 + i:04d}" for i in range(N)])
        held_out = HeldOut(1, test_ids, np.zeros(N, np.int64), rng.uniform(0, 0.6, N))
        scores = Scores(1, proba)
        write_predictions(folder, Predictions(SCENE_IDS, SCENE_LABELS, scores, scores, held_out))
        row = {"epoch": 1, "val_loss": 0.3, "val_majority_rate": 30 / 35, "epoch_time_s": 1.0}
        config = {"variant": variant, "downsample": "maxpool", "seed": 51}
        trials.append(summarize_trial(variant, config, [row], checkpoint=Checkpoint(str(folder))))
    table = comparison_table(summarize_variants(trials))
    note = f"The held-out test split holds {N} cubes and 0 spheres: F1, ROC AUC and AP are"
    assert flat(format_table(table)).count(note) == 1
    assert "caution: the held-out test split holds cubes only" in table.verdict


# --- without per-scene scores, with seeds, with two classes -----------------------------------


def test_without_scores_the_majority_rate_says_one_class(tmp_path: Path) -> None:
    """Trials with no predictions.json, each reporting a majority-class rate of 1: one class,
    which one unknown; the metrics undefined on either class are named, the others cautioned."""
    trials = []
    for variant in VARIANTS[:2]:
        for seed in (51, 52):
            row = {"epoch": 1, "val_loss": 0.1 * seed / 50, "val_accuracy": 0.9, "val_f1": 0.0}
            row |= {"val_balanced_accuracy": 0.9, "val_roc_auc": float("nan")}
            row |= {"val_majority_rate": 1.0, "epoch_time_s": 1.0, "num_parameters": 10}
            config = {"variant": variant, "downsample": "maxpool", "seed": seed}
            trials.append(summarize_trial(f"{variant}{seed}", config, [row]))
    table = comparison_table(summarize_variants(trials))
    assert table.scenes is None
    assert (
        "The validation split holds one class only (every trial reports a majority-class rate "
        "of 1.00; which class is unknown without per-scene scores): ROC AUC and AP are undefined "
        "there, and Balanced Accuracy and F1 are computed where defined, on that class alone"
    ) in flat(format_table(table))
    rows = {r[0] for r in table.rows()}
    assert {"F1\n(one class only)", "ROC AUC\n(undefined)"} <= rows
    assert table.verdict.endswith(
        "; caution: the validation split holds one class only, so this val_loss says how each "
        "variant scores one class, not whether it tells cubes and spheres apart"
    )


def test_differences_on_one_class_take_its_df(tmp_path: Path) -> None:
    """Differences on one class: t with (its count - 1) df, not the 1 df an absent class gave."""
    assert inference.scene_df("val_loss", np.zeros(N)) == N - 1
    assert inference.scene_df("val_loss", SCENE_LABELS) == 4  # 5 spheres: as before
    table = comparison_table(one_class_variants(tmp_path, CUBES))
    assert table.paired["val_loss"].df == N - 1  # one seed each: the scene part alone


def test_two_classes_say_nothing_of_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    trials = [
        scene_trial(tmp_path, v, 51, np.clip(np.where(SCENE_LABELS == 1, 0.7, 0.3)
                                             + rng.uniform(-0.3, 0.3, 35), 0, 1))
        for v in VARIANTS[:3]
    ]  # fmt: skip
    table = comparison_table(summarize_variants(trials))
    assert table.one_class is None and one_class_of(SCENE_LABELS) is None
    text = format_table(table)
    assert "split holds" not in text and "(undefined)" not in text and "only)" not in text
    assert "caution: the validation" not in table.verdict


# --- the CILP table -------------------------------------------------------------------------------


def test_the_cilp_table_tags_classifier_and_probe_rows(tmp_path: Path) -> None:
    classifier = comparison_table(one_class_variants(tmp_path, CUBES))
    chains = []
    for v in classifier.variants:
        numbers = {m.key: 0.5 for m in cilp_rows()}
        trial = TrialResult(v.name, {"seed": 51}, "TERMINATED", 3, 1, numbers)
        summaries = {k: summarize([x]) for k, x in numbers.items()}
        chains.append(VariantSummary(v.name, {"chain": v.name}, [trial], summaries, trial))
    table = CilpTable(chains, classifier=classifier)
    a, b = chains
    table.comparisons = {m.key: compare(a.values(m.key), b.values(m.key)) for m in cilp_rows()}
    rows = {r[0]: r for r in table.rows()}
    assert rows["Linear probe, image emb.: ROC AUC\n(undefined)"][1:] == ["n/a", "n/a", "n/a"]
    assert "Linear probe, image emb.: balanced accuracy\n(cubes only)" in rows
    assert rows["F1\n(undefined)"][1:] == ["n/a", "n/a", "n/a"]  # the classifier's F1
    assert "Balanced Accuracy\n(cubes only)" in rows
    assert "Retrieval top-1 RGB→LiDAR" in rows  # retrieval needs no class: untagged
    notes = classifier_notes(classifier)
    assert notes[0].startswith(f"The validation split holds {N} cubes")  # every stage's split
    assert all(n.startswith("RGB-only classifier: ") for n in notes[1:])


# --- a real run whose validation split holds cubes only ---------------------------------------

SCENES = 50


def cubes_only_validation(out: Path) -> Path:
    """A raw layout whose default validation split holds cubes only, spheres in training: a raw
    directory is read cubes first, then spheres, and split by split_mask, so as many spheres as
    follow the split's last validation scene all land in training."""
    validation = np.flatnonzero(~split_mask(SCENES))
    spheres = SCENES - 1 - int(validation.max())
    assert spheres >= 4, "the default split changed: choose another SCENES"
    generate_raw(out, scenes=SCENES, seed=0, sphere_fraction=spheres / SCENES)
    arrays = load_arrays(out)
    assert not arrays.labels[~arrays.is_train].any() and arrays.labels[arrays.is_train].any()
    return out


@pytest.mark.slow
def test_a_real_run_on_a_cubes_only_split(tmp_path: Path, ray_env: RayEnv) -> None:
    raw = cubes_only_validation(tmp_path / "raw")
    storage = tmp_path / "runs"
    cmd = run_command(raw, storage, "--epochs", "1", "--name", "x")
    run = subprocess.run(cmd, cwd=ROOT, env=ray_env.env, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    shown = subprocess.run(
        [sys.executable, "-m", "analysis", str(storage / "x")],
        cwd=ROOT, env=ray_env.env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stdout[-3000:] + shown.stderr[-3000:]
    n_val = int(np.sum(~split_mask(SCENES)))
    for out in (run.stdout, shown.stdout):
        text = flat(out)
        assert text.count(f"The validation split holds {n_val} cubes and 0 spheres: F1, ROC AUC "
                          "and AP are undefined there") == 1  # fmt: skip
        assert re.search(r"\| Balanced Accuracy +\| .*\n\| \(cubes only\) +\|", out)
        verdict = [line for line in out.splitlines() if line.startswith("Verdict: ")]
        assert len(verdict) == 1
        verdict_text = text[text.index("Verdict: ") :]
        assert "caution: the validation split holds cubes only" in verdict_text
        for key in CLASSIFICATION:
            if key.key != "val_loss":  # the verdict is on the space's loss alone
                assert key.key not in verdict_text
        assert "Traceback" not in out
