"""The analysis on a real (tiny) CILP experiment: `analysis.report` gives the CILP table, and
`python -m analysis` writes its numbers (CSV, JSON) and each stage's curves (PNG) the way it
does for a fusion experiment, and --to-fiftyone puts each chain's RGB-only classifier's
predictions on the data's FiftyOne samples."""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import pytest
from helpers import RayEnv, run_command, snapshot

import analysis
from analysis.__main__ import main as cli_main
from analysis.cilp_table import cilp_table, classifier_keys
from tune_cilp.cilp.stages import cilp_rows, stage_names
from tune_cilp.core.errors import UserError

pytestmark = pytest.mark.slow

SEEDS = [1, 2]  # two: the table's cells get intervals


@pytest.fixture(scope="module")
def experiment(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory, ray_env: RayEnv) -> Path:
    """A finished `--space cilp` experiment: one epoch per stage, two seeds (and the rgb
    baseline the space trains as its reference model)."""
    storage = tmp_path_factory.mktemp("cilp_analysis")
    seeds = ",".join(map(str, SEEDS))
    cmd = run_command(tiny_raw, storage, "--space", "cilp", "--epochs", "1", "--seeds", seeds)
    proc = subprocess.run(cmd, env=ray_env.env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return storage / "cilp"


def test_report_is_the_cilp_table(experiment: Path) -> None:
    text = analysis.report(str(experiment), fmt="github")
    assert all(m.label in text for m in cilp_rows())
    assert "| cilp" in text.splitlines()[0]  # one column per chain
    assert "Reference model" in text and "rgb-maxpool" in text  # the baselines, as before
    assert f"({len(SEEDS)} seeds)" in text
    # the classifier rows as the fusion table's: intervals over seeds and validation scenes
    classifiers = cilp_table(str(experiment)).classifier.variants  # the fusion table's view
    assert [len(v.trials) for v in classifiers] == [len(SEEDS)]  # one chain, a trial per seed
    assert all(0.5 <= t.majority_rate <= 1 for v in classifiers for t in v.trials)  # reported
    prose = " ".join(text.split())  # the notes are wrapped
    assert "RGB-only classifier: Intervals [95%] over training seeds and validation scenes" in prose
    assert "Seeds enter with k - 1 df" in prose
    with pytest.raises(UserError, match="unknown table format"):
        analysis.report(str(experiment), fmt="nope")


def test_cli_writes_the_cilp_tables_numbers_and_curves(
    experiment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    out_csv, out_json, plots = tmp_path / "t.csv", tmp_path / "t.json", tmp_path / "plots"
    argv = [str(experiment), "--csv", str(out_csv), "--json", str(out_json)]
    assert cli_main([*argv, "--plots", str(plots)]) == 0
    printed = capsys.readouterr().out
    assert all(m.label in printed for m in cilp_rows())
    table = cilp_table(str(experiment))
    (chain,) = table.chains

    with out_csv.open(encoding="utf-8") as f:
        records = list(csv.DictReader(f))
    assert [r["metric"] for r in records] == [m.label for m in cilp_rows()]
    for record, m in zip(records, cilp_rows(), strict=True):
        summary = chain.metrics[m.key]
        assert int(record["cilp n"]) == len(SEEDS)
        assert math.isclose(float(record["cilp mean"]), summary.mean, rel_tol=1e-12)
        assert math.isclose(float(record["cilp std"]), summary.std, rel_tol=1e-12)
        if m.key in classifier_keys():  # the interval over seeds and scenes, from the scores
            low, value, high = (float(record[f"cilp {k}"]) for k in ("low", "value", "high"))
            if math.isnan(low):  # every resample scores alike: no interval on a constant
                assert math.isnan(high) and math.isfinite(value)
            else:
                assert low <= value <= high
                assert m.key == "classifier_val_loss" or 0.0 <= low <= high <= 1.0
        else:
            assert "cilp low" not in record or record["cilp low"] == ""

    data = json.loads(out_json.read_text())
    assert data["kind"] == "cilp" and data["experiment"] == str(experiment)
    assert [r["key"] for r in data["rows"]] == [m.key for m in cilp_rows()]
    assert [c["name"] for c in data["chains"]] == ["cilp"]
    seeds = data["chains"][0]["seeds"]
    assert [s["seed"] for s in seeds] == SEEDS
    for stage in stage_names():  # the trial each seed's chain used: the one the stage chose
        links = json.loads((experiment / stage / "stage.json").read_text())["links"]
        chosen = {link["seed"]: link["trial_id"] for link in links}
        assert {s["seed"]: s["stages"][stage]["trial_id"] for s in seeds} == chosen
        for s in seeds:
            result = s["stages"][stage]
            assert result["epochs"] == 1 and result["best_epoch"] == 1
            assert math.isfinite(result["metrics"]["val_loss"])
    by_seed = {t.config["seed"]: t.metrics for t in chain.trials}
    for s in seeds:  # the chain's classifier loss is its classifier trial's best epoch
        loss = s["metrics"]["classifier_val_loss"]
        assert loss == by_seed[s["seed"]]["classifier_val_loss"]
        assert loss == s["stages"]["classifier"]["metrics"]["val_loss"]
    assert [v["name"] for v in data["references"]] == ["rgb-maxpool"]
    assert "NaN" not in out_json.read_text()  # NaN becomes null, as in the fusion JSON

    pngs = sorted(p.name for p in plots.glob("*.png"))
    assert pngs == sorted(f"cilp_{stage}.png" for stage in stage_names())
    for name in pngs:
        assert f"wrote {plots / name}" in printed
        with Image.open(plots / name) as img:
            img.verify()
        with Image.open(plots / name) as img:
            assert img.format == "PNG" and img.width >= 600 and img.height >= 300
    assert f"wrote {out_csv}" in printed and f"wrote {out_json}" in printed
    assert not list(plots.glob(".*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_to_fiftyone_writes_each_chains_rgb_only_predictions(
    experiment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fiftyone import ViewField as F

    from tune_cilp.core.fiftyone_env import import_fiftyone
    from tune_cilp.data import LABELS

    before = snapshot(experiment, exact=True)
    assert cli_main([str(experiment), "--to-fiftyone", "--fiftyone-dataset", "cilp_review"]) == 0
    out = capsys.readouterr().out
    assert "Classifier Validation Loss" in out  # the table first, as without the option
    (line,) = [row for row in out.splitlines() if row.startswith("pred_cilp: cilp (best trial")]
    wrong = int(line.split("misclassifies ")[1].split(" of ")[0])
    assert "launch_app" in out
    dataset = import_fiftyone().load_dataset("cilp_review")  # ingested from the raw source
    assert {"rgb", "lidar_img"} <= set(dataset.group_slices) and len(dataset) > 0
    for slice_name in dataset.group_slices:
        labels, confidences = dataset.select_group_slices(slice_name).values(
            ["pred_cilp.label", "pred_cilp.confidence"]
        )
        assert len(labels) == len(confidences) == len(dataset)  # a prediction on every scene
        assert set(labels) <= set(LABELS) and None not in labels
        assert all(0.5 <= c <= 1.0 for c in confidences)
    assert len(dataset.match(F("pred_cilp.label") != F("ground_truth.label"))) == wrong
    assert snapshot(experiment, exact=True) == before  # reading the experiment changes nothing


def test_a_copied_cilp_experiment_is_read_without_running_its_code(
    experiment: Path, tmp_path: Path
) -> None:
    import shutil
    import sys

    from helpers import ROOT, plant

    copy, marker = tmp_path / "cilp-from-a-colleague", tmp_path / "code-ran"
    shutil.copytree(experiment, copy)
    assert plant(copy, marker) >= len(stage_names()) + 1  # every stage's and the baseline's state
    expected = analysis.report(str(experiment)).replace(str(experiment), str(copy))
    for args in ((), ("--to-fiftyone", "--fiftyone-dataset", "cilp_untrusted")):
        proc = subprocess.run(
            [sys.executable, "-m", "analysis", str(copy), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert proc.stdout[: len(expected)] == expected
    assert not marker.exists()
