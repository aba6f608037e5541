"""The progress display: one line per trial (epoch n / N, the latest metric, ETA) and one for the
experiment, redrawn in place in a terminal and appended as plain lines in a log; a failed trial
is one line; Ray's table only with --verbose; a reporter pickled into an experiment comes back
as the resuming process's."""

from __future__ import annotations

import io
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import ray
from ray import tune
from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial

from tune_cilp.experiment import progress
from tune_cilp.experiment.progress import Progress, _Table, duration


@dataclass
class FakeTrial:
    """What the reporter reads of a Tune Trial."""

    trial_id: str
    config: dict[str, Any]
    status: str = "RUNNING"
    last_result: dict[str, Any] = field(default_factory=dict)
    path: str = ""


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def epoch(trial: FakeTrial, n: int, loss: float, seconds_per_epoch: float = 2.0) -> None:
    trial.last_result = {
        "training_iteration": n,
        "val_loss": loss,
        "time_total_s": n * seconds_per_epoch,
    }


def reporter(stream: io.StringIO, **kwargs: Any) -> Progress:
    p = Progress()
    p.configure(name_keys=("variant", "seed"), stream=stream, **kwargs)
    p.setup(start_time=None, total_samples=3, metric="val_loss", mode="min")
    return p


def trials() -> list[FakeTrial]:
    return [
        FakeTrial(f"t{i}", {"variant": v, "seed": 51, "epochs": 10}) for i, v in enumerate("abc")
    ]


def test_a_log_gets_plain_lines_one_per_new_epoch_and_the_experiment_line() -> None:
    log = io.StringIO()
    p, ts = reporter(log), trials()
    epoch(ts[0], 4, 0.5)
    assert p.should_report(ts)
    p.report(ts, False)
    lines = log.getvalue().splitlines()
    assert lines[0].split() == ["a", "51", "epoch", "4/10", "val_loss", "0.5", "ETA", "12s"]
    assert lines[1].startswith("experiment: epoch 4/30 (13%), 0/3 trials ended")
    assert len(lines) == 2 and "\x1b" not in log.getvalue()  # no cursor movement in a log
    assert not p.should_report(ts)  # nothing new
    ts[0].status = "ERROR"
    ts[0].path = "/x/trial_a"
    assert p.should_report(ts)  # a trial that ends is printed at once
    p.report(ts, False)
    failed = log.getvalue().splitlines()[2]
    assert failed.endswith("failed (error.txt in /x/trial_a)") and failed.split()[:4] == [
        "a",
        "51",
        "epoch",
        "4/10",
    ]
    p.report(ts, False)  # its line once only
    assert sum("failed" in line for line in log.getvalue().splitlines()) == 1


def test_a_terminal_redraws_the_block_of_running_trials_in_place() -> None:
    screen = Terminal()
    p, ts = reporter(screen), trials()
    epoch(ts[0], 1, 0.7)
    epoch(ts[1], 2, 0.6)
    p.report(ts, False)
    first = screen.getvalue()
    assert not first.startswith("\x1b") and first.count("\n") == 3  # 2 trials + the experiment
    ts[0].status = "TERMINATED"
    epoch(ts[0], 10, 0.3)
    p.report(ts, False)
    second = screen.getvalue()[len(first) :]
    assert second.startswith("\x1b[3F\x1b[J")  # up over the old block, cleared
    lines = second.split("\x1b[J", 1)[1].splitlines()
    assert "done in 20s" in lines[0]  # the ended trial stays above the block
    assert len(lines) == 3 and lines[1].split()[:4] == ["b", "51", "epoch", "2/10"]
    p.report(ts, False)
    assert (
        screen.getvalue().endswith("\n")
        and "done in" not in screen.getvalue()[len(first) + len(second) :]
    )


def test_eta_of_the_experiment_follows_this_runs_pace() -> None:
    p, ts = reporter(io.StringIO()), trials()
    p.started -= 10  # 10 s into the run, 5 epochs done
    epoch(ts[0], 5, 0.5)
    p.summary(ts[:0], False)  # the run began with 0 epochs done
    line = p.summary(ts, False)
    assert "epoch 5/30" in line and "ETA 50s" in line  # 25 epochs left at 0.5 epoch/s


def test_a_trial_whose_config_lacks_a_name_key_is_named_by_its_id() -> None:
    """Ray's own table looked up each parameter column in every trial's config and raised
    KeyError on a resume (seen in CI); here a missing key is left out of the name."""
    p = reporter(io.StringIO())
    assert p.name(FakeTrial("abc_00001", {})) == "abc_00001"
    assert p.name(FakeTrial("x", {"seed": 52})) == "52"


def test_verbose_hands_the_report_to_rays_table() -> None:
    p = reporter(io.StringIO(), verbose=True)
    assert isinstance(p.table, tune.CLIReporter)


def test_a_pickled_reporter_is_the_resuming_process_s() -> None:
    assert pickle.loads(pickle.dumps(progress.current())) is progress.current()


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (59.6, "1m00s"), (3725, "1h02m"), (float("nan"), "?")]
)
def test_durations(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.slow
def test_rays_table_names_the_best_trial_from_its_config_when_the_result_lacks_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Seen in CI: after a killed driver's state was rolled back, the resumed trials' last
    results had no config, and Ray's "current best trial" line raised KeyError ('variant')."""
    storage = StorageContext(str(tmp_path), "experiment", trial_dir_name="trial")
    config = {"variant": "concat", "seed": 51, "epochs": 3}
    trial = Trial("__fake", config=config, stub=True, storage=storage)
    trial.set_status(Trial.RUNNING)
    trial.run_metadata.last_result = {"val_loss": 0.5, "training_iteration": 1}
    table = _Table(parameter_columns=["variant", "seed"], print_intermediate_tables=False)
    table.setup(start_time=time.time(), total_samples=1, metric="val_loss", mode="min")
    ray.init(num_cpus=1, include_dashboard=False)  # the table names Ray's session directory
    try:
        table.report([trial], False)
    finally:
        ray.shutdown()
    assert "parameters={'variant': 'concat', 'seed': 51}" in capsys.readouterr().out
