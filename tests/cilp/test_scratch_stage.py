"""Adding a CILP stage takes one Stage entry + its config + its trainer (issue 30).

tests/cilp/scratch_stage.py holds a fourth stage, "scratch", written as a developer would write
it: a config class (a StageConfig), a trainer on the shared TrainingLoop (a Downstream: it
continues from the classifier stage's best trial) and its Stage entry. What puts it in the chain
is the one line a developer adds to tune_cilp/cilp/stages.py:

    STAGES: tuple[Stage, ...] = (CONTRASTIVE, PROJECTOR, CLASSIFIER, SCRATCH)

Here monkeypatch makes that edit in this process. A real run's other processes (the driver, every
Ray process it starts, `python -m analysis`) each import the package afresh, so each gets it the
way each would import the edited stages.py: a sitecustomize on their PYTHONPATH calls
scratch_stage.register() when the interpreter starts. No other file knows the stage, and the
chain trains it after the classifier, its trial continuing from the classifier's chosen one, and
the CILP table shows its rows, its probe, its curves and its epochs in the training time.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, RayEnv, histories, plugin_env, run_command
from scratch_stage import SCRATCH, ScratchTrainer

import analysis
from analysis.cilp_table import cilp_table, write_cilp_plots
from tune_cilp.cilp import stages
from tune_cilp.cilp.chain import stage_params
from tune_cilp.cilp.stage_trainers import make_trainer
from tune_cilp.cilp.stages import cilp_rows, stage_names
from tune_cilp.core.checkpoint import save_checkpoint
from tune_cilp.data import CilpArrays
from tune_cilp.spaces import get_space

HERE = Path(__file__).resolve().parent
LABELS = ["Scratch Validation Loss", "Scratch Logit Scale", "Linear probe, calibrated logit: AP"]


@pytest.fixture
def with_scratch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's one line, in this process."""
    monkeypatch.setattr(stages, "STAGES", (*stages.STAGES, SCRATCH))


def test_a_registered_stage_is_in_the_chain_the_rows_and_the_trainer_lookup(
    with_scratch: None, tiny_arrays: CilpArrays, tmp_path: Path
) -> None:
    assert stage_names() == ("contrastive", "projector", "classifier", "scratch")
    keys = [m.key for m in cilp_rows()]
    # its rows after the classifier's, its probe's with the other probes, then the chain's time
    assert keys[-3:] == ["scratch_val_loss", "scratch_scale", "training_time_s"]
    assert keys.index("probe_calibrated_roc_auc") < keys.index("classifier_val_loss")
    assert SCRATCH.status_columns["val_scale"] == "scale"
    params = stage_params(get_space("cilp"), "scratch", [51], 2, None, None)  # cilp lists no
    assert params["classifier_checkpoint"] == "<upstream>" and params["epochs"] == 2  # scratch
    checkpoint = ""
    for stage in stages.STAGES:  # each stage from the one before, found through the registry
        config = {"stage": stage.name, "epochs": 1, "batch_size": 8}
        if stage.upstream_key:
            config[stage.upstream_key] = checkpoint
        trainer = make_trainer(config, tiny_arrays)
        row = trainer.run_epoch()
        checkpoint = str(save_checkpoint(tmp_path / stage.name / "state.pt", trainer.state_dict()))
    assert isinstance(trainer, ScratchTrainer)
    reported = {m.key for m in (*SCRATCH.epoch_metrics, *SCRATCH.probe_rows)}
    assert reported <= set(row) and math.isfinite(row["probe_calibrated_roc_auc"])


@pytest.mark.slow
def test_a_scratch_stage_runs_in_a_real_chain_and_its_rows_are_in_the_table(
    tiny_raw: Path, tmp_path: Path, ray_env: RayEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = plugin_env(tmp_path, "scratch_stage", HERE, ray_env.env)
    storage = tmp_path / "runs"
    cmd = run_command(tiny_raw, storage, "--space", "cilp", "--epochs", "2")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    experiment = storage / "cilp"

    # The chain trained it after the classifier, from the classifier trial it chose.
    (classifier,) = json.loads((experiment / "classifier" / "stage.json").read_text())["links"]
    (scratch,) = json.loads((experiment / "scratch" / "stage.json").read_text())["links"]
    (rows,) = histories(experiment / "scratch").values()
    assert rows[0]["config"]["classifier_checkpoint"] == classifier["checkpoint"]
    assert scratch["upstream_dir"] == classifier["trial_dir"]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["val_scale"] != 1.0  # it learned
    assert math.isfinite(rows[-1]["probe_calibrated_roc_auc"])
    assert all(label in proc.stdout for label in LABELS)  # the table the run printed

    # The CILP table of the same directory: without the stage registered, three stages' rows;
    # with it, the scratch stage's too, from its chosen trial.
    assert not any(label in analysis.report(str(experiment)) for label in LABELS)
    monkeypatch.setattr(stages, "STAGES", (*stages.STAGES, SCRATCH))
    report = analysis.report(str(experiment))
    assert all(label in report for label in LABELS)
    assert "Training Time: the four stages' epochs summed" in " ".join(report.split())
    table = cilp_table(str(experiment))
    assert [row[0] for row in table.rows()] == [m.label for m in cilp_rows()]
    assert list(table.stages) == list(stage_names())
    ((_, seed_row),) = [(t.config["seed"], t.metrics) for t in table.chains[0].trials]
    assert seed_row["scratch_val_loss"] == scratch["val_loss"]
    assert seed_row["probe_calibrated_roc_auc"] == rows[-1]["probe_calibrated_roc_auc"]
    chain = [rows for s in stage_names() for rows in histories(experiment / s).values()]
    epochs = [r["epoch_time_s"] for trial in chain for r in trial]
    assert seed_row["training_time_s"] == pytest.approx(sum(epochs))
    plots = write_cilp_plots(table, str(tmp_path / "plots"))
    assert [Path(p).name for p in plots][-1] == "cilp_scratch.png"

    # `python -m analysis` as a user runs it, in a process that registers the stage at start-up.
    cli = [sys.executable, "-m", "analysis", str(experiment)]
    shown = subprocess.run(cli, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and all(label in shown.stdout for label in LABELS)
