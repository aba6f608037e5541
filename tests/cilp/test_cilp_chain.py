"""The CILP chain for real (real Ray, tiny data): two seeds end to end with the table, a driver
killed in the projector stage resuming without re-running the contrastive stage, bad input
refused with one line and nothing stored changed, and a downstream compare sharing its upstream
trials, copied elsewhere and resumed there."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from faulty_run import faulty, held_pid, pause_env
from helpers import (
    ROOT,
    RayEnv,
    error_lines,
    finish,
    histories,
    run_command,
    snapshot,
    start,
    wait_for,
)

from tune_cilp.cilp.cilp_model import LidarCNN
from tune_cilp.cilp.stages import cilp_rows, stage_names
from tune_cilp.experiment.identity import META_FILE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_seeds(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory, ray_env: RayEnv) -> dict:
    storage = tmp_path_factory.mktemp("cilp")
    cmd = run_command(tiny_raw, storage, "--space", "cilp", "--epochs", "2", "--seeds", "1,2")
    proc = subprocess.run(cmd, env=ray_env.env, capture_output=True, text=True, timeout=600)
    return {"proc": proc, "experiment": storage / "cilp", "cmd": cmd}


def analyse(experiment: Path, ray_env: RayEnv) -> subprocess.CompletedProcess:
    """`python -m analysis EXPERIMENT --format github`, as a user runs it."""
    cmd = [sys.executable, "-m", "analysis", str(experiment), "--format", "github"]
    env = ray_env.env
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_two_seed_chain_end_to_end(two_seeds: dict) -> None:
    proc, experiment = two_seeds["proc"], two_seeds["experiment"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for stage in stage_names():
        links = json.loads((experiment / stage / "stage.json").read_text())["links"]
        assert sorted(link["seed"] for link in links) == [1, 2]
    # seed s's projector starts from seed s's embedders, its classifier from its projector
    for stage, key in (
        ("projector", "contrastive_checkpoint"),
        ("classifier", "projector_checkpoint"),
    ):
        upstream = stage_names()[stage_names().index(stage) - 1]
        seed_of = {
            link["checkpoint"]: link["seed"]
            for link in json.loads((experiment / upstream / "stage.json").read_text())["links"]
        }
        runs = histories(experiment / stage)
        assert len(runs) == 2, (stage, list(runs))  # one trial per seed
        for rows in runs.values():
            config = rows[0]["config"]
            assert seed_of[config[key]] == config["seed"]
            assert [r["epoch"] for r in rows] == [1, 2]
    # Folder names: the seed where it is known when Tune names them, never Tune's placeholder
    names = [p.parent.name for p in experiment.glob("*/*/params.json")]
    assert len(names) == 2 * len(stage_names()) + 2  # and the two rgb baseline trials
    assert all(" " not in n and "__fn_ph" not in n for n in names), names
    for label in [m.label for m in cilp_rows()]:
        assert label in proc.stdout, label
    assert "rgb-maxpool" in proc.stdout  # the RGB-only reference row
    assert json.loads((experiment / META_FILE).read_text())["finished_at"]


def test_rerun_prints_the_table_and_analysis_reads_it(two_seeds: dict, ray_env: RayEnv) -> None:
    experiment = two_seeds["experiment"]
    before = snapshot(experiment)
    again = subprocess.run(
        two_seeds["cmd"], env=ray_env.env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0 and "is finished" in again.stdout, again.stderr[-2000:]
    assert "starting stage" not in again.stdout and snapshot(experiment) == before
    table = analyse(experiment, ray_env)
    assert table.returncode == 0, table.stderr[-2000:]
    assert all(m.label in table.stdout for m in cilp_rows()) and "Reference model" in table.stdout
    from analysis.cilp_table import cilp_table

    loaded = cilp_table(str(experiment))
    assert [c.name for c in loaded.chains] == ["cilp"] and len(loaded.rows()) == len(cilp_rows())
    assert all(c.metrics[m.key].n == 2 for c in loaded.chains for m in cilp_rows())
    assert [v.name for v in loaded.references] == ["rgb-maxpool"]


def test_killed_in_the_projector_stage_resumes_without_rerunning_contrastive(
    tiny_raw: Path, tmp_path: Path
) -> None:
    epochs = 3
    # The projector trial is held after its first epoch (tests/faulty_run.py) until the driver
    # is killed: the stage cannot end first, however fast its epochs are.
    marker = tmp_path / "held"
    env = RayEnv(**pause_env(marker, 1, "projector"))
    # Both runs by faulty_run: Tune refuses to resume under another trial function.
    cmd = faulty(run_command(tiny_raw, tmp_path, "--space", "cilp", "--epochs", str(epochs)))
    experiment = tmp_path / "cilp"
    try:
        proc = start(cmd, env, tmp_path / "first.log")
        try:
            wait_for(lambda: held_pid(marker), proc, "the projector held after epoch 1", 300)
            wait_for(lambda: histories(experiment / "projector"), proc, "its row stored", 60)
            proc.send_signal(signal.SIGKILL)
        finally:
            finish(proc, tmp_path / "first.log")
        assert not (experiment / "projector" / "stage.json").exists()
        contrastive = snapshot(experiment / "contrastive")
        resumed = subprocess.run(cmd, env=env.env, capture_output=True, text=True, timeout=600)
    finally:
        env.close()
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming stage projector" in resumed.stdout
    assert "stage contrastive" not in resumed.stdout
    assert snapshot(experiment / "contrastive") == contrastive
    for stage in ("projector", "classifier"):
        runs = histories(experiment / stage)
        assert len(runs) == 1, (stage, list(runs))
        for rows in runs.values():
            assert [row["epoch"] for row in rows] == list(range(1, epochs + 1)), stage


def test_bad_lidar_cnn_is_one_line_and_stores_nothing(
    tiny_raw: Path, tmp_path: Path, ray_env: RayEnv
) -> None:
    wrong = LidarCNN().state_dict()
    wrong["embedder.0.weight"] = torch.zeros(50, 4, 3, 3)
    torch.save(wrong, tmp_path / "wrong.pt")
    torch.save(LidarCNN(), tmp_path / "module.pt")  # a whole pickled module, not a state dict
    storage = tmp_path / "results"
    cases = {
        "wrong.pt": "embedder.0.weight has shape (50, 4, 3, 3), expected (50, 1, 3, 3)",
        "module.pt": "not a loadable checkpoint",
    }
    for name, expected in cases.items():
        cmd = run_command(tiny_raw, storage, "--space", "cilp-nvidia", "--lidar-cnn")
        proc = subprocess.run(
            [*cmd, str(tmp_path / name)],
            env=ray_env.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 2, proc.stderr[-2000:]
        (line,) = error_lines(proc.stderr)
        assert expected in line
        assert not storage.exists() or not any(storage.iterdir())


def test_missing_or_foreign_stage_checkpoint_is_one_line(
    two_seeds: dict, tmp_path: Path, ray_env: RayEnv
) -> None:
    copy = tmp_path / "cilp"
    shutil.copytree(two_seeds["experiment"], copy)
    shutil.rmtree(copy / "classifier")
    shutil.rmtree(copy / "baselines")
    meta = json.loads((copy / META_FILE).read_text())
    (copy / META_FILE).write_text(json.dumps({**meta, "finished_at": None}))
    # stage.json names checkpoints relative to the experiment: the copy uses its own
    links = json.loads((copy / "projector" / "stage.json").read_text())["links"]
    checkpoint = copy / links[0]["checkpoint"]
    contrastive = json.loads((copy / "contrastive" / "stage.json").read_text())["links"][0]
    cmd = two_seeds["cmd"][:]
    cmd[cmd.index("--storage-path") + 1] = str(tmp_path)
    for case, expected in (
        ("foreign", "a contrastive checkpoint, not a projector one"),
        ("missing", "checkpoint file not found"),
    ):
        if case == "foreign":
            shutil.copy(copy / contrastive["checkpoint"], checkpoint)
        else:
            checkpoint.unlink()
        before = snapshot(copy)
        proc = subprocess.run(cmd, env=ray_env.env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
        (line,) = error_lines(proc.stderr)
        assert expected in line and str(checkpoint) in line
        assert snapshot(copy) == before


def test_a_downstream_compare_shares_upstream_trials_and_a_moved_copy_resumes(
    tiny_raw: Path, tmp_path: Path, ray_env: RayEnv
) -> None:
    from analysis.cilp_table import cilp_table

    space = "cilp-frozen-vs-finetune"
    cmd = run_command(tiny_raw, tmp_path / "first", "--space", space, "--epochs", "1")
    cmd += ["--seeds", "1,2"]
    proc = subprocess.run(cmd, env=ray_env.env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    experiment = tmp_path / "first" / space
    # one contrastive and one projector trial per seed; both classifiers continue from it
    counts = {stage: len(histories(experiment / stage)) for stage in stage_names()}
    assert counts == {"contrastive": 2, "projector": 2, "classifier": 4}
    links = json.loads((experiment / "projector" / "stage.json").read_text())["links"]
    projector_of = {link["seed"]: link["checkpoint"] for link in links}
    configs = [rows[0]["config"] for rows in histories(experiment / "classifier").values()]
    assert sorted((c["seed"], c["finetune"]) for c in configs) == [
        (1, False), (1, True), (2, False), (2, True)
    ]  # fmt: skip
    assert all(c["projector_checkpoint"] == projector_of[c["seed"]] for c in configs)
    assert all(not Path(c["projector_checkpoint"]).is_absolute() for c in configs)
    table = cilp_table(str(experiment))
    assert [c.name for c in table.chains] == ["finetune=False", "finetune=True"]
    assert table.shared == ("contrastive", "projector")
    differences = {row[0]: row[-1] for row in table.rows()}
    assert differences["Contrastive Validation Loss"] == "shared"
    assert differences["Projector Validation MSE"] == "shared"
    assert differences["Classifier Validation Loss"] != "shared"

    # Moved: the original is gone; the copy, its classifier stage removed, resumes where it is.
    copy = tmp_path / "moved" / space
    shutil.copytree(experiment, copy)
    shutil.rmtree(tmp_path / "first")
    shutil.rmtree(copy / "classifier")
    shutil.rmtree(copy / "baselines")
    meta = json.loads((copy / META_FILE).read_text())
    (copy / META_FILE).write_text(json.dumps({**meta, "finished_at": None}))
    upstream = [snapshot(copy / stage) for stage in ("contrastive", "projector")]
    cmd[cmd.index("--storage-path") + 1] = str(tmp_path / "moved")
    resumed = subprocess.run(cmd, env=ray_env.env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "starting stage classifier" in resumed.stdout
    assert "stage contrastive" not in resumed.stdout and "stage projector" not in resumed.stdout
    assert [snapshot(copy / stage) for stage in ("contrastive", "projector")] == upstream
    assert len(histories(copy / "classifier")) == 4
    analysed = analyse(copy, ray_env)
    assert analysed.returncode == 0, analysed.stderr[-2000:]
    assert "finetune=True" in analysed.stdout and "shared" in analysed.stdout


def test_a_changed_lidar_cnn_file_under_the_same_path_is_refused(
    tiny_raw: Path, tmp_path: Path, ray_env: RayEnv
) -> None:
    torch.manual_seed(0)
    cnn = tmp_path / "lidar_cnn.pt"
    torch.save(LidarCNN().state_dict(), cnn)
    storage = tmp_path / "results"
    cmd = [
        *run_command(tiny_raw, storage, "--space", "cilp-nvidia", "--epochs", "1"),
        *("--lidar-cnn", str(cnn)),
    ]
    first = subprocess.run(cmd, env=ray_env.env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    experiment = storage / "cilp-nvidia"
    before = snapshot(experiment)

    torch.manual_seed(1)  # other weights, same keys and shapes: a valid file, not the one used
    torch.save(LidarCNN().state_dict(), cnn)
    again = subprocess.run(cmd, env=ray_env.env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2, again.stdout[-2000:] + again.stderr[-2000:]
    (line,) = error_lines(again.stderr)
    assert f"--lidar-cnn: the file {cnn} changed since this experiment was made" in line
    assert snapshot(experiment) == before  # nothing it holds was touched


def test_three_chains_sharing_upstream_stages_say_so(
    tiny_raw: Path, tmp_path: Path, ray_env: RayEnv
) -> None:
    cmd = run_command(tiny_raw, tmp_path, "--space", "cilp-nvidia-balance", "--epochs", "1")
    proc = subprocess.run(cmd, env=ray_env.env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    experiment = tmp_path / "cilp-nvidia-balance"
    counts = {stage: len(histories(experiment / stage)) for stage in stage_names()}
    assert counts == {"contrastive": 1, "projector": 1, "classifier": 3}
    analysed = analyse(experiment, ray_env)
    assert analysed.returncode == 0, analysed.stderr[-2000:]
    text = " ".join(analysed.stdout.split())
    assert (
        "Contrastive and Projector rows (and their probes): shared, the same trials in every "
        "chain (one per seed)" in text
    )
    assert "RGB-only classifier: Intervals [95%] over validation scenes only" in text
