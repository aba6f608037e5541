"""The analysis package on a real tiny experiment made by the real runner (2 variants x 3 seeds,
2 epochs on 48 scenes), plus the statistics on small hand-computed inputs."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, execute_notebook, histories

from analysis import (
    Experiment,
    TrialRecord,
    experiment_table,
    format_table,
    load_experiment,
    report,
)
from analysis.__main__ import main as cli_main
from analysis.stats import (
    compare,
    summarize,
    summarize_trial,
    summarize_variants,
    variant_names,
    verdict,
)
from analysis.table import comparison_table, row_metrics
from tune_cilp.core.errors import UserError, run_cli

SEEDS = (51, 52, 53)
VARIANTS = ("concat-maxpool", "concat-stride")  # the seed-ablation space, in its order


def _env() -> dict[str, str]:
    # Subprocesses (runner, notebook kernel) import the checkout and share the private test env.
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


@pytest.fixture(scope="module")
def run_output(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(experiment directory, runner stdout) of a real tiny seed-ablation run."""
    storage = tmp_path_factory.mktemp("ray_results")
    argv = ["--dataset", str(tiny_raw), "--epochs", "2", "--seeds", ",".join(map(str, SEEDS))]
    argv += ["--storage-path", str(storage), "--name", "x", "--wandb", "disabled"]
    proc = subprocess.run(
        [sys.executable, "-m", "tune_cilp.run", *argv],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return storage / "x", proc.stdout


@pytest.fixture(scope="module")
def experiment_dir(run_output: tuple[Path, str]) -> Path:
    return run_output[0]


def _own_results(experiment_dir: Path) -> dict[tuple[str, int], list[dict]]:
    """Each trial's result.json, read directly: the independent record the table must match."""
    out = {}
    for result_file in experiment_dir.glob("*/result.json"):
        rows = [json.loads(line) for line in result_file.read_text().splitlines() if line]
        cfg = rows[0]["config"]
        out[(f"{cfg['variant']}-{cfg['downsample']}", cfg["seed"])] = rows
    return out


# --- the real experiment ---------------------------------------------------------------------


@pytest.mark.slow
def test_runner_prints_the_table(run_output: tuple[Path, str]) -> None:
    _, stdout = run_output
    assert "Validation Loss" in stdout and "Verdict: " in stdout


@pytest.mark.slow
def test_table_has_every_row_and_column(experiment_dir: Path) -> None:
    table = experiment_table(load_experiment(experiment_dir))
    names = [f"{v}\n(3 seeds)" for v in VARIANTS]
    assert table.headers == ["Metric", *names, "Difference\n[95% CI]", "p", "p check"]
    assert table.scenes is not None
    assert table.scenes.coverage == "training seeds and validation scenes"
    rows = table.rows()
    assert [r[0].split("\n")[0] for r in rows] == [m.label for m in row_metrics()]
    assert rows[0][0] == "Validation Loss\n(primary)"
    loss, params = rows[0], rows[1]  # the loss: value and interval; the parameter count: one number
    assert all(len(cell.splitlines()) == 2 for cell in loss[1:4]), loss
    assert params[0] == "Parameters (M)" and all("\n" not in cell for cell in params[1:3])
    text = " ".join(format_table(table, "grid").split())
    assert "over training seeds and validation scenes" in text
    assert "on the last epoch's validation scores" in text and "(n=3 vs 3 seeds)" in text
    assert "p check: Welch's t-test across seeds" in text and "No-skill reference" in text


@pytest.mark.slow
def test_numbers_equal_best_epochs_of_trials(experiment_dir: Path) -> None:
    own = _own_results(experiment_dir)
    assert sorted(own) == sorted((v, s) for v in VARIANTS for s in SEEDS)
    table = experiment_table(load_experiment(experiment_dir))
    for variant in table.variants:
        assert sorted(t.config["seed"] for t in variant.trials) == list(SEEDS)
        for trial in variant.trials:
            rows = own[(variant.name, trial.config["seed"])]
            assert len(rows) == 2 == trial.epochs
            best = min(rows, key=lambda r: r["val_loss"])
            assert trial.best_epoch == best["epoch"]
            assert trial.metrics["val_loss"] == pytest.approx(best["val_loss"])
            assert trial.metrics["val_accuracy"] == pytest.approx(best["val_accuracy"])
            assert trial.metrics["val_balanced_accuracy"] == pytest.approx(
                best["val_balanced_accuracy"]
            )
            assert trial.metrics["val_f1"] == pytest.approx(best["val_f1"])
            assert trial.metrics["params_m"] == pytest.approx(best["num_parameters"] / 1e6)
            assert trial.metrics["training_time_s"] == pytest.approx(
                sum(r["epoch_time_s"] for r in rows)
            )
        losses = [min(r["val_loss"] for r in own[(variant.name, s)]) for s in SEEDS]
        mean = sum(losses) / 3
        std = math.sqrt(sum((x - mean) ** 2 for x in losses) / 2)
        assert variant.metrics["val_loss"].mean == pytest.approx(mean)
        assert variant.metrics["val_loss"].std == pytest.approx(std)
        assert variant.best.metrics["val_loss"] == pytest.approx(min(losses))
    cell = table.rows()[0][1]
    assert cell.startswith(format(table.variants[0].metrics["val_loss"].mean, ".4g"))


@pytest.mark.slow
def test_works_after_moving_the_directory(experiment_dir: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "renamed"
    shutil.copytree(experiment_dir, moved)
    original = report(str(experiment_dir), fmt="github")
    assert report(str(moved), fmt="github") == original
    assert report(f"file://{moved}", fmt="github") == original
    experiment = load_experiment(moved)
    assert experiment.meta is not None and experiment.meta.dataset is not None
    for trial in experiment.trials:
        assert Path(trial.checkpoint.path).is_relative_to(moved)
        assert (Path(trial.checkpoint.path) / "state.pt").is_file()


@pytest.mark.slow
def test_partial_results_of_unfinished_trials(experiment_dir: Path, tmp_path: Path) -> None:
    # A copy in which one trial has reported only its first epoch so far.
    partial = tmp_path / "partial"
    shutil.copytree(experiment_dir, partial)
    result_file = sorted(partial.glob("*/result.json"))[0]
    first = result_file.read_text().splitlines()[0]
    result_file.write_text(first + "\n")
    (partial / "tune_cilp.json").unlink()  # an experiment not made by our runner still loads
    experiment = load_experiment(partial)
    short = [t for t in experiment.trials if len(t.history) == 1]
    assert len(short) == 1 and experiment.meta is None
    table = experiment_table(experiment)
    assert sum(len(v.trials) for v in table.variants) == 6
    trial = next(t for v in table.variants for t in v.trials if t.trial_id == short[0].trial_id)
    assert trial.metrics["val_loss"] == pytest.approx(json.loads(first)["val_loss"])


# --- damaged result files (what a crash or a full disk leaves) ----------------------------------


def _append_cut_line(trial_dir: Path) -> None:
    # A crash while Ray wrote a third epoch's result: a line without its end.
    with (trial_dir / "result.json").open("ab") as f:
        f.write(b'{"epoch": 3, "train_loss": 0.7')


def _cut_both_files(trial_dir: Path) -> None:
    # A crash while Ray wrote the second epoch to both files: each last line cut short.
    for name in ("result.json", "progress.csv"):
        data = (trial_dir / name).read_bytes().rstrip(b"\r\n")
        (trial_dir / name).write_bytes(data[:-40])


def _insert_garbage_line(trial_dir: Path) -> None:
    first, rest = (trial_dir / "result.json").read_bytes().split(b"\n", 1)
    (trial_dir / "result.json").write_bytes(first + b"\n\xff\x00garbage\n" + rest)


def _zero_first_line(trial_dir: Path) -> None:
    # After a power loss a block of the file can read back as zeros.
    first, rest = (trial_dir / "result.json").read_bytes().split(b"\n", 1)
    (trial_dir / "result.json").write_bytes(b"\x00" * len(first) + b"\n" + rest)


def _empty_result_json(trial_dir: Path) -> None:
    (trial_dir / "result.json").write_bytes(b"")


def _delete_result_json(trial_dir: Path) -> None:
    (trial_dir / "result.json").unlink()


def _nothing_intact(trial_dir: Path) -> None:
    (trial_dir / "result.json").write_bytes((trial_dir / "result.json").read_bytes()[:100])
    (trial_dir / "progress.csv").unlink()


CUT_NOTE = "result.json has a damaged line 3; recovered 2 intact epochs"
NOTHING_NOTE = "result.json has a damaged line 1; recovered 0 intact epochs"
# case: (damaged trials by index in trial order, damage, epochs still intact, note after the trial)
DAMAGE_CASES = {
    "last line cut": ((1,), _append_cut_line, (1, 2), CUT_NOTE),
    "every last line cut": (range(6), _append_cut_line, (1, 2), CUT_NOTE),
    "both files cut": (
        (1,),
        _cut_both_files,
        (1,),
        "result.json has a damaged line 2; progress.csv has a damaged line 3; "
        "recovered 1 intact epoch",
    ),
    "garbage line in the middle": (
        (1,),
        _insert_garbage_line,
        (1, 2),
        "result.json has a damaged line 2; recovered 2 intact epochs",
    ),
    "first line zeroed": (
        (1,),
        _zero_first_line,
        (1, 2),
        "result.json has a damaged line 1; recovered 2 intact epochs (1 from progress.csv)",
    ),
    "result.json empty": (
        (1,),
        _empty_result_json,
        (1, 2),
        "result.json is empty; recovered 2 intact epochs (2 from progress.csv)",
    ),
    "result.json missing": (
        (1, 4),
        _delete_result_json,
        (1, 2),
        "result.json is missing; recovered 2 intact epochs (2 from progress.csv)",
    ),
    "nothing intact": ((1,), _nothing_intact, (), NOTHING_NOTE),
    "nothing intact anywhere": (range(6), _nothing_intact, (), NOTHING_NOTE),
}


def _damaged_copy(experiment_dir: Path, tmp_path: Path, damage, trials) -> list[Path]:
    """Trial directories, in trial order, of a copy of the experiment with `trials` damaged."""
    copy = tmp_path / "crashed"
    # The table reads a checkpoint's predictions.json, not its state: leaving the states out
    # saves copying ~400 MB.
    shutil.copytree(experiment_dir, copy, ignore=shutil.ignore_patterns("state.pt"))
    trial_dirs = sorted(p.parent for p in copy.glob("*/params.json"))
    assert len(trial_dirs) == 6
    for i in trials:
        damage(trial_dirs[i])
    return trial_dirs


def _checksums(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _trial_name(rows: list[dict]) -> str:
    cfg = rows[0]["config"]
    return f"{rows[0]['trial_id']} ({cfg['variant']}-{cfg['downsample']} seed={cfg['seed']})"


@pytest.mark.slow
@pytest.mark.slow
@pytest.mark.parametrize("case", DAMAGE_CASES)
def test_damaged_result_files_are_recovered_and_noted(
    experiment_dir: Path, tmp_path: Path, case: str
) -> None:
    damaged, damage, intact, note = DAMAGE_CASES[case]
    trial_dirs = _damaged_copy(experiment_dir, tmp_path, damage, damaged)
    before = _checksums(tmp_path / "crashed")
    table = experiment_table(load_experiment(tmp_path / "crashed"))
    text = " ".join(format_table(table).split())  # the notes as printed, without line wrapping
    assert _checksums(tmp_path / "crashed") == before

    undamaged = histories(experiment_dir)  # each trial's rows, read from the intact original
    shown = {t.trial_id: t for v in table.variants for t in v.trials}
    left_out = []
    for i, trial_dir in enumerate(trial_dirs):
        rows = undamaged[trial_dir.name]
        trial_id, name = rows[0]["trial_id"], _trial_name(rows)
        kept = [r for r in rows if i not in damaged or r["epoch"] in intact]
        if i in damaged:
            assert f"trial {name}: {note}" in table.notes and f"trial {name}: {note}" in text
        if not kept:
            assert trial_id not in shown
            left_out.append(name)
            continue
        expected = summarize_trial(trial_id, rows[0]["config"], kept)
        trial = shown[trial_id]
        assert (trial.epochs, trial.best_epoch) == (len(kept), expected.best_epoch)
        assert trial.metrics == pytest.approx(expected.metrics, nan_ok=True)
    assert sum(n.startswith("trial ") for n in table.notes) == len(damaged)  # only those
    if left_out:
        reason = "have no intact epoch in their result files and are left out"
        assert f"{len(left_out)} trial(s) {reason}: {', '.join(left_out)}." in table.notes
    assert "not reported" not in text  # a damaged trial has reported
    if intact == (1, 2):
        assert table.rows() == experiment_table(load_experiment(experiment_dir)).rows()
    if not table.variants:
        assert text.startswith("no trial has a validation loss to show yet")


@pytest.mark.slow
def test_cli_reads_a_crashed_experiment(experiment_dir: Path, tmp_path: Path) -> None:
    trial_dirs = _damaged_copy(experiment_dir, tmp_path, _append_cut_line, range(6))
    before = _checksums(tmp_path / "crashed")
    proc = subprocess.run(
        [sys.executable, "-m", "analysis", str(tmp_path / "crashed")],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = " ".join(proc.stdout.split())
    assert all(v in out for v in VARIANTS) and "(3 seeds)" in out and "Verdict: " in out
    undamaged = histories(experiment_dir)
    for trial_dir in trial_dirs:
        assert f"trial {_trial_name(undamaged[trial_dir.name])}: {CUT_NOTE}" in out
    assert _checksums(tmp_path / "crashed") == before


@pytest.mark.slow
def test_cli_writes_table_files_and_plots(experiment_dir: Path, tmp_path: Path, capsys) -> None:
    from PIL import Image

    out_csv, out_json, plots = tmp_path / "t.csv", tmp_path / "t.json", tmp_path / "plots"
    argv = [
        str(experiment_dir),
        "--format",
        "latex",
        "--csv",
        str(out_csv),
        "--json",
        str(out_json),
    ]
    assert cli_main([*argv, "--plots", str(plots)]) == 0
    printed = capsys.readouterr().out
    assert "\\begin{tabular}" in printed and "Verdict: " in printed

    with out_csv.open() as f:
        records = list(csv.DictReader(f))
    assert [r["metric"] for r in records] == [m.label for m in row_metrics()]
    assert {"concat-maxpool mean", "concat-stride std", "difference", "p_value"} <= set(records[0])
    data = json.loads(out_json.read_text())
    assert [v["name"] for v in data["variants"]] == list(VARIANTS)
    assert len(data["variants"][0]["trials"]) == 3 and data["verdict"]

    pngs = sorted(plots.glob("*.png"))
    assert [p.name for p in pngs] == [
        "curves.png",
        "final_metrics.png",
        "paired_differences.png",
        "reliability.png",
        "wrong_scenes.png",
    ]
    for png in pngs:
        with Image.open(png) as img:
            img.verify()
        with Image.open(png) as img:
            assert img.format == "PNG" and img.width >= 600 and img.height >= 300
    assert not list(plots.glob(".tmp-*")) and not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{missing}"], "no such directory"),
        (["{empty}"], "not a Ray Tune experiment"),
        (["{exp}", "--format", "nope"], "unknown table format"),
        (["{exp}", "--csv", "{missing}/t.csv"], "does not exist"),
    ],
)
@pytest.mark.slow
def test_cli_errors_are_one_line(experiment_dir, tmp_path, capsys, argv, message) -> None:
    paths = {"missing": tmp_path / "missing", "empty": tmp_path, "exp": experiment_dir}
    with pytest.raises(SystemExit) as exit_info:
        run_cli(cli_main, [a.format(**paths) for a in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.mark.slow
def test_predictions_land_on_fiftyone_samples(experiment_dir: Path, capsys) -> None:
    from fiftyone import ViewField as F

    from analysis.review import to_fiftyone
    from tune_cilp.core.fiftyone_env import import_fiftyone
    from tune_cilp.data import LABELS

    fo = import_fiftyone()
    experiment = load_experiment(experiment_dir)
    table = experiment_table(experiment)
    wrong = to_fiftyone(experiment, table.variants)  # raw-dir source: ingested as dataset "x"
    assert sorted(wrong) == ["pred_concat_maxpool", "pred_concat_stride"]
    assert "launch_app" in capsys.readouterr().out

    dataset = fo.load_dataset("x")
    for slice_name in dataset.group_slices:
        view = dataset.select_group_slices(slice_name)
        assert len(view) == 48
        for field in wrong:
            labels, confidences = view.values([f"{field}.label", f"{field}.confidence"])
            assert set(labels) <= set(LABELS) and None not in labels
            assert all(0.5 <= c <= 1.0 for c in confidences)
    for field, count in wrong.items():  # the view the review tells the user to open
        assert len(dataset.match(F(f"{field}.label") != F("ground_truth.label"))) == count

    # A second review reuses the dataset and overwrites the fields with the same predictions.
    assert to_fiftyone(experiment, table.variants) == wrong
    assert len(fo.load_dataset("x").select_group_slices("rgb")) == 48


@pytest.mark.slow
def test_fiftyone_source_is_used_in_place(experiment_dir: Path, tmp_path: Path, capsys) -> None:
    from analysis.review import prepare_dataset, to_fiftyone
    from tune_cilp.core.fiftyone_env import import_fiftyone
    from tune_cilp.data import ingest_raw

    # An experiment whose data source was the FiftyOne dataset "cilp_src": no second ingestion.
    experiment = load_experiment(experiment_dir)
    ingest_raw(experiment.meta.dataset, "cilp_src", progress=False)
    experiment.meta.dataset = "cilp_src"
    wrong = to_fiftyone(experiment, experiment_table(experiment).variants)
    assert "ingesting" not in capsys.readouterr().out
    dataset = import_fiftyone().load_dataset("cilp_src")
    for field in wrong:
        assert None not in dataset.select_group_slices("rgb").values(f"{field}.label")
    experiment.meta = None  # not made by the runner: the data is unknown
    with pytest.raises(UserError, match="tune_cilp.json: missing"):
        prepare_dataset(experiment)


@pytest.mark.slow
def test_notebook_executes(experiment_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in _env().items():
        monkeypatch.setenv(key, value)
    text, images = execute_notebook(experiment_dir)
    assert "| Validation Loss" in text and "concat-stride" in text
    assert images == 5  # curves, final metrics, paired differences, wrong scenes, reliability


# --- statistics on known small inputs ---------------------------------------------------------


def _history(losses: list[float], acc: list[float], seconds: float = 1.0) -> list[dict]:
    return [
        {
            "epoch": e + 1,
            "val_loss": vl,
            "val_accuracy": a,
            "val_balanced_accuracy": a / 2,
            "val_f1": a / 4,
            "epoch_time_s": seconds,
            "num_parameters": 2_000_000,
        }
        for e, (vl, a) in enumerate(zip(losses, acc, strict=True))
    ]


def test_statistics_across_three_seeds_by_hand() -> None:
    s = summarize([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.n, s.min, s.max) == (2.0, 1.0, 3, 1.0, 3.0)
    one = summarize([4.0])
    assert one.mean == 4.0 and one.n == 1 and math.isnan(one.std)

    # Best epoch = smallest val_loss (epoch 2 here), metrics taken from that epoch.
    cfg = {"variant": "concat", "downsample": "maxpool", "lr": 0.001}
    trials = [
        summarize_trial("a0", {**cfg, "seed": 51}, _history([0.5, 0.2, 0.3], [0.6, 0.9, 0.8], 2.0)),
        summarize_trial("a1", {**cfg, "seed": 52}, _history([0.4, 0.3, 0.1], [0.7, 0.8, 1.0], 2.0)),
        summarize_trial("a2", {**cfg, "seed": 53}, _history([0.6, 0.5, 0.6], [0.5, 0.6, 0.7], 2.0)),
        summarize_trial("b0", {**cfg, "downsample": "stride", "seed": 51}, _history([0.9], [0.5])),
    ]
    assert [t.best_epoch for t in trials] == [2, 3, 2, 1]
    assert trials[0].metrics["training_time_s"] == 6.0
    a, b = summarize_variants(trials)
    assert (a.name, b.name) == ("concat-maxpool", "concat-stride")
    assert [t.trial_id for t in a.trials] == ["a0", "a1", "a2"] and a.best.trial_id == "a1"
    # val_loss 0.2, 0.1, 0.5: mean 0.8/3; squared deviations sum to 0.26/3, / (n - 1) = 0.13/3
    assert a.metrics["val_loss"].mean == pytest.approx(0.8 / 3)
    assert a.metrics["val_loss"].std == pytest.approx(math.sqrt(0.13 / 3))
    assert a.metrics["val_accuracy"].mean == pytest.approx((0.9 + 1.0 + 0.6) / 3)
    assert a.metrics["params_m"].std == 0.0 and b.metrics["val_loss"].n == 1
    assert summarize_trial("c", cfg, [{"epoch": 1, "train_loss": 0.3}]) is None

    # One side has a single seed: the difference, but no test.
    table = comparison_table([a, b])
    assert table.headers[-1] == "Difference\n[95% CI]"  # no test column: a side has one seed
    assert table.rows()[0][-1] == format(0.9 - 0.8 / 3, "+.4g")
    assert table.verdict.startswith("no test possible") and "(n=3 vs 1)" in table.verdict


def test_welch_test_by_hand() -> None:
    from scipy.stats import t as student_t

    # a: mean 2, var 1; b: mean 4, var 4; n = 3 each.
    c = compare([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    se = math.sqrt(1 / 3 + 4 / 3)
    df = (5 / 3) ** 2 / ((1 / 3) ** 2 / 2 + (4 / 3) ** 2 / 2)  # Welch-Satterthwaite = 50/17
    assert df == pytest.approx(50 / 17)
    assert c.difference == 2.0 and (c.n_a, c.n_b) == (3, 3)
    assert c.p_value == pytest.approx(2 * student_t.sf(2.0 / se, df))
    half = student_t.ppf(0.975, df) * se
    assert (c.ci_low, c.ci_high) == (pytest.approx(2.0 - half), pytest.approx(2.0 + half))
    assert c.p_value > 0.05 and c.ci_low < 0 < c.ci_high  # consistent: CI covers 0, p > 5 %

    same = compare([2.0, 2.0], [2.0, 2.0])
    assert same.difference == 0.0 and not same.testable


def test_verdict_and_variant_names() -> None:
    def variant(name_cfg: dict, losses: list[float]):
        trials = [
            summarize_trial(f"t{i}", {**name_cfg, "seed": i}, _history([vl], [0.5]))
            for i, vl in enumerate(losses)
        ]
        return summarize_variants(trials)[0]

    a = variant({"variant": "late", "downsample": "maxpool"}, [1.0, 1.1, 0.9])
    b = variant({"variant": "late", "downsample": "stride"}, [2.0, 2.1, 1.9])
    line = verdict(a, b)
    assert "is significant at 5%" in line and "(n=3 vs 3)" in line
    assert "not shown to differ in val_loss, which is not equivalence" in verdict(
        a, variant({"variant": "add", "downsample": "x"}, [0.8, 1.2, 1.0])
    )

    configs = [
        {"variant": "concat", "downsample": "maxpool", "lr": 0.001, "epochs": 2, "seed": 1},
        {"variant": "concat", "downsample": "maxpool", "lr": 0.01, "epochs": 2, "seed": 1},
    ]
    assert variant_names(configs) == ["concat-maxpool lr=0.001", "concat-maxpool lr=0.01"]


def test_every_left_out_trial_is_named_with_its_reason() -> None:
    def trial(i: int, status: str, history: list[dict], damage: str = "") -> TrialRecord:
        config = {"variant": "concat", "downsample": "maxpool", "seed": i}
        return TrialRecord(f"t{i}", config, status, history, damage=damage)

    lost = "result.json has a damaged line 1; recovered 0 intact epochs"
    trials = [
        trial(0, "TERMINATED", _history([0.5], [0.6])),
        trial(1, "RUNNING", []),
        trial(2, "PENDING", []),
        trial(3, "ERROR", []),
        trial(4, "TERMINATED", [{"epoch": 1, "val_loss": math.nan, "train_loss": 0.3}]),
        trial(5, "TERMINATED", []),
        trial(6, "RUNNING", [], damage=lost),
        trial(7, "ERROR", _history([0.4], [0.5])),
    ]
    table = experiment_table(Experiment("/x", trials))
    assert [t.trial_id for t in table.variants[0].trials] == ["t0", "t7"]
    name = "t{} (concat-maxpool seed={})".format
    assert table.notes == [
        f"2 trial(s) failed (ERROR): {name(3, 3)}, {name(7, 7)}; the traceback is in error.txt in "
        "each trial's directory.",
        f"trial {name(6, 6)}: {lost}",
        f"2 trial(s) have not reported a validation loss yet and are left out: {name(1, 1)}, "
        f"{name(2, 2)}.",
        f"1 trial(s) failed before reporting and are left out: {name(3, 3)}.",
        f"1 trial(s) reported no finite validation loss and are left out: {name(4, 4)}.",
        f"1 trial(s) finished without reporting a result and are left out: {name(5, 5)}.",
        f"1 trial(s) have no intact epoch in their result files and are left out: {name(6, 6)}.",
        "1 trial(s) not finished (ERROR): partial results.",
        "No per-scene intervals or paired tests: no checkpoint: 2 trial(s), "
        f"{name(0, 0)}, {name(7, 7)}. Cells show what the seeds alone give.",
    ]
    empty = format_table(experiment_table(Experiment("/x", trials[1:7])))
    assert empty.startswith("no trial has a validation loss to show yet\n")
    assert name(4, 4) in empty and name(6, 6) in empty


@pytest.mark.slow
def test_report_rejects_bad_format(experiment_dir: Path) -> None:
    with pytest.raises(UserError, match="unknown table format"):
        report(str(experiment_dir), fmt="nope")
