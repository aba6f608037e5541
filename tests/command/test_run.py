"""``python -m tune_cilp.run`` end to end with real Ray (local, 2 CPUs) on the tiny data."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import ray
from helpers import ROOT, histories, saved_environ
from ray import cloudpickle

import tune_cilp.run
from tune_cilp.core.errors import UserError, run_cli
from tune_cilp.core.metrics import EPOCH_KEYS, PROCESS, TRIAL_INFO
from tune_cilp.data import CilpArrays
from tune_cilp.experiment.driver import smoke_subset
from tune_cilp.experiment.identity import META_FILE
from tune_cilp.fusion.fusion_driver import train_fusion
from tune_cilp.run import main
from tune_cilp.spaces import list_spaces

FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"
ENV_PROJECT = "cilp-project-from-the-environment"

EPOCH_METRICS = (*EPOCH_KEYS, *TRIAL_INFO, *(m.key for m in PROCESS))  # the schema


@pytest.fixture
def local_ray(restore_env: None) -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def run_args(tiny_raw: Path, storage: Path, *extra: str) -> list[str]:
    return ["--dataset", str(tiny_raw), "--storage-path", str(storage), *extra]


@contextlib.contextmanager
def trial_function(function: Callable[..., None]) -> Iterator[None]:
    """`function` (of this module) as the fusion trial function the command hands Tune: the
    name tune_cilp.run's dispatch looks up, replaced from outside. Pickled by value: Ray's
    workers cannot import the tests."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(tune_cilp.run, "train_fusion", function)
            yield
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def seed_ablation(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One 2-epoch seed-ablation run (W&B offline); its experiment path and printed output."""
    storage = tmp_path_factory.mktemp("results")
    with saved_environ():
        os.environ["WANDB_API_KEY"] = FAKE_KEY  # offline runs must not carry it anywhere
        os.environ["WANDB_PROJECT"] = ENV_PROJECT  # no --wandb-project: the environment's
        ray.init(num_cpus=2, include_dashboard=False)
        try:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = main(run_args(tiny_raw, storage, "--epochs", "2"))
        finally:
            ray.shutdown()
    assert code == 0, out.getvalue()
    return storage / "seed-ablation", out.getvalue()


@pytest.mark.slow
def test_seed_ablation_reports_every_metric_every_epoch(seed_ablation: tuple[Path, str]) -> None:
    experiment, output = seed_ablation
    runs = histories(experiment)
    assert len(runs) == 2
    assert sorted(rows[0]["variant_name"] for rows in runs.values()) == [
        "concat-maxpool",
        "concat-stride",
    ]
    for name, rows in runs.items():
        assert [row["epoch"] for row in rows] == [1, 2]
        for row in rows:
            assert all(row.get(key) is not None for key in EPOCH_METRICS), row
            assert row["num_parameters"] == 2_094_501
        assert len(list((experiment / name).glob("checkpoint_*/state.pt"))) == 2
        assert (experiment / name / "progress.csv").is_file()
    assert not list(experiment.rglob("events.out.tfevents*"))  # TensorBoard only if asked
    meta = json.loads((experiment / META_FILE).read_text())
    assert meta["space"] == "seed-ablation" and meta["smoke_test"] is False
    assert output.count(f"experiment: {experiment}") == 2
    assert "no GPU: running on CPU cores" in output
    assert "concat-maxpool" in output.split("starting trials")[-1]  # the comparison table
    # The progress lines, plain in a captured stream: each trial's end, the experiment's total.
    lines = output.splitlines()
    for name in ("concat maxpool 51", "concat stride 51"):
        (end,) = [line for line in lines if line.split()[:5] == [*name.split(), "epoch", "2/2"]]
        assert " done in " in end, end
    assert "experiment: 2/2 trials ended, 4 epochs in" in output
    assert "Trial name" not in output and "\x1b" not in output  # no Ray table, no redraws


@pytest.mark.slow
def test_wandb_offline_writes_one_run_per_trial(seed_ablation: tuple[Path, str]) -> None:
    experiment, _ = seed_ablation
    offline_runs = sorted((experiment / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2
    for run in offline_runs:
        (log,) = run.glob("*.wandb")  # the run's records: project, config, per-epoch history
        assert ENV_PROJECT.encode() in log.read_bytes() and b"val_loss" in log.read_bytes()
    files = [path for path in experiment.rglob("*") if path.is_file()]
    assert not [path for path in files if FAKE_KEY.encode() in path.read_bytes()]


FAKE_GPU_TRIALS = 4  # two variants x two seeds, a quarter of the one GPU each
MEETING = "TUNE_CILP_TEST_MEETING"  # the folder where meet_then_train's trials meet
MEET_TIMEOUT_S = 120.0


def meet_then_train(config: dict, **kwargs: object) -> None:
    """train_fusion once all FAKE_GPU_TRIALS trials have started: each leaves its pid in the
    folder $MEETING and waits for the others'. Trials that the cluster ran one after another
    would wait in vain: the first raises, failing the run."""
    folder = Path(os.environ[MEETING])
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + MEET_TIMEOUT_S
    while len(list(folder.iterdir())) < FAKE_GPU_TRIALS:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(list(folder.iterdir()))} trials running at once")
        time.sleep(0.05)
    train_fusion(config, **kwargs)


@pytest.mark.slow
def test_fake_gpu_runs_four_trials_on_it_at_once(
    tiny_raw: Path, tmp_path: Path, restore_env: None
) -> None:
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    os.environ[MEETING] = str(meeting)  # before Ray starts: its workers inherit it
    # Ray only counts the GPU; torch (CPU build) sees no CUDA, so the trials train on CPU.
    ray.init(num_cpus=FAKE_GPU_TRIALS, num_gpus=1, include_dashboard=False)
    try:
        argv = run_args(
            tiny_raw, tmp_path, "--seeds", "1,2", "--epochs", "2", "--wandb", "disabled"
        )
        with trial_function(meet_then_train):
            assert main(argv) == 0  # every trial met the others: all four ran at once
    finally:
        ray.shutdown()
    runs = histories(tmp_path / "seed-ablation")
    assert len(runs) == FAKE_GPU_TRIALS
    assert not (tmp_path / "seed-ablation" / "wandb").exists()  # the flag over WANDB_MODE=offline
    pids = {rows[0]["pid"] for rows in runs.values()}
    assert {int(p.name) for p in meeting.iterdir()} == pids  # the trials that met trained
    assert all(
        row["gpu_fraction"] == 0.25 and row["device"] == "cpu"
        for rows in runs.values()
        for row in rows
    )


@pytest.mark.slow
def test_hpo_asha_stops_some_trials_early(
    tiny_raw: Path, tmp_path: Path, local_ray: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = run_args(tiny_raw, tmp_path, "--space", "hpo", "--epochs", "4", "--num-samples", "8")
    assert main([*argv, "--wandb", "disabled", "--tensorboard", "--verbose"]) == 0
    assert "Trial name" in capsys.readouterr().out  # --verbose: Ray's status table
    runs = histories(tmp_path / "hpo")
    assert len(runs) == 8
    for name in runs:
        assert list((tmp_path / "hpo" / name).glob("events.out.tfevents*")), name
    # The first trial to reach each rung always goes on; each later one stops when worse than
    # the median so far, so with 8 trials some stop early (all beating it has odds < 1 %).
    epochs_run = sorted(len(rows) for rows in runs.values())
    assert epochs_run[0] < 4 and epochs_run[-1] == 4, epochs_run  # stopped early / ran to the end
    assert len({rows[0]["lr"] for rows in runs.values()}) == 8  # Optuna sampled each trial


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--space", "nope"], "--space: unknown space 'nope'"),
        (["--epochs", "0"], "--epochs: must be between 1 and 10,000"),
        (["--epochs", "-3"], "--epochs: must be between 1 and 10,000"),
        (["--epochs", "100000000000000000000"], "--epochs: must be between 1 and 10,000"),
        (["--name", ""], "--name: must be a plain directory name, got ''"),
        (["--gpus-per-trial", "1.5"], "--gpus-per-trial: must be a fraction in [0, 1]"),
        (["--gpus-per-trial", "-0.1"], "--gpus-per-trial: must be a fraction in [0, 1]"),
        (["--seeds", "1,x"], "--seeds: expected comma-separated integers"),
        (["--address", "127.0.0.1:1"], "--address: cannot reach a Ray cluster at 127.0.0.1:1"),
        (["--wandb", "loud"], "invalid choice: 'loud'"),
        (["--space", "hpo", "--seeds", "1,2"], "--seeds: space 'hpo' samples"),
        (["--dataset", "/no/such/dir"], "no/such/dir"),
    ],
)
def test_bad_arguments_fail_before_anything_starts(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, ["--storage-path", str(tmp_path), *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not ray.is_initialized()
    assert not (tmp_path / "seed-ablation").exists()


@pytest.mark.slow
def test_non_writable_storage_path_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    cmd = [sys.executable, "-m", "tune_cilp.run", "--storage-path", str(tmp_path / "file/sub")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --storage-path:") and proc.stderr.count("\n") == 1


@pytest.mark.slow
def test_gpu_request_on_a_cluster_without_gpu_is_one_line(
    tiny_raw: Path, tmp_path: Path, local_ray: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, run_args(tiny_raw, tmp_path, "--gpus-per-trial", "0.5"))
    assert exit_info.value.code == 2
    assert (
        "--gpus-per-trial: 0.5 requested but the Ray cluster has no GPU" in capsys.readouterr().err
    )


def test_the_driver_imports_no_torch() -> None:
    # The driver hands Tune the trainable and plans threads from FLOPs: torch (~2 s) is the
    # trial's import. A subprocess: this test process has torch loaded already.
    code = "import sys, tune_cilp.run; print(sorted({'torch', 'scipy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_smoke_subset_keeps_both_classes_on_both_sides(tiny_arrays: CilpArrays) -> None:
    small = smoke_subset(tiny_arrays)
    counts = small.counts()
    assert all(n > 0 for split in counts.values() for n in split.values())
    assert len(small.train) <= 32 and len(small.validation) <= 16


def test_list_spaces_shows_each_with_its_description(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-spaces"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [space.name for space in list_spaces()]
    assert all(len(line.split()) > 3 for line in lines)


def train_cilp(config: dict, **kwargs: object) -> None:
    """The fusion trial function under its name before the fusion wing (Tune stores it)."""
    train_fusion(config, **kwargs)


@pytest.mark.slow
def test_an_unfinished_experiment_of_the_old_trial_function_is_refused_in_one_line(
    tiny_raw: Path, tmp_path: Path, local_ray: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*run_args(tiny_raw, tmp_path, "--epochs", "1"), "--wandb", "disabled"]
    with trial_function(train_cilp):
        assert main(argv) == 0
    meta = tmp_path / "seed-ablation" / META_FILE
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "finished_at": None}))
    capsys.readouterr()
    with pytest.raises(UserError, match="trial function had another name"):
        main(argv)
