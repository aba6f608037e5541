"""``python tests/faulty_run.py ARGS...``: the runner with faults injected from outside the
production code. Before ``main`` runs, this script puts its trial functions in place of the
ones the command hands Tune (the name ``train_fusion`` in tune_cilp.run and, when a pause names
a CILP stage, ``train_stage`` in tune_cilp.cilp.chain). Defined here, in ``__main__``, Ray
pickles them by value, so the trial workers run them without importing tests/.

- A fusion trial with seed FAILING_SEED raises before training.
- With the variables of ``pause_env`` set, the first trial to report epoch N (of stage S for a
  CILP chain) writes its pid into the marker file and then holds still, its checkpoint saved and
  its row handed to Tune, until it is killed (or its Ray is gone): a test injects its fault at
  exactly that point instead of racing the trial. The marker stays, so the trial's resumed run
  (and every later trial) goes on.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from tune_cilp.core.errors import run_cli
from tune_cilp.fusion.fusion_driver import train_fusion

FAILING_SEED = 52
MESSAGE = f"injected failure: seed {FAILING_SEED}"

PAUSE_MARKER = "FAULTY_RUN_PAUSE_MARKER"
PAUSE_EPOCH = "FAULTY_RUN_PAUSE_EPOCH"
PAUSE_STAGE = "FAULTY_RUN_PAUSE_STAGE"
HOLD_S = 600.0  # a held trial whose test went away ends by itself
SCRIPT = str(Path(__file__).resolve())


def faulty(cmd: list[str]) -> list[str]:
    """`cmd` (helpers.run_command's) run by this script instead of ``-m tune_cilp.run``."""
    assert cmd[1:3] == ["-m", "tune_cilp.run"], cmd
    return [cmd[0], SCRIPT, *cmd[3:]]


def pause_env(marker: Path, epoch: int, stage: str | None = None) -> dict[str, str]:
    """The environment that holds the first trial to report `epoch` (of CILP `stage`)."""
    env = {PAUSE_MARKER: str(marker), PAUSE_EPOCH: str(epoch)}
    return {**env, PAUSE_STAGE: stage} if stage else env


def held_pid(marker: Path) -> int | None:
    """The pid of the held trial's process once it holds; None before."""
    try:
        return int(marker.read_text())
    except (FileNotFoundError, ValueError):  # not there yet, or its pid not written yet
        return None


def _hold_after_reporting(config: dict[str, Any]) -> None:
    """In the trial's process: make tune.report (which the trial loop calls once per epoch)
    hold the trial after it reports the paused epoch, if the pause applies to this trial."""
    from ray import tune

    marker, stage = os.environ.get(PAUSE_MARKER), os.environ.get(PAUSE_STAGE)
    if marker is None or (stage is not None and config.get("stage") != stage):
        return
    epoch, report = int(os.environ[PAUSE_EPOCH]), tune.report

    def report_then_hold(metrics: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        report(metrics, *args, **kwargs)
        if metrics.get("epoch") != epoch:
            return
        try:  # one trial per run holds: the first to create the marker
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        parent, deadline = os.getppid(), time.monotonic() + HOLD_S
        while os.getppid() == parent and time.monotonic() < deadline:
            time.sleep(0.1)
        os._exit(1)  # not killed, but the raylet that started it is gone (or HOLD_S passed)

    tune.report = report_then_hold


def failing_on_seed(config: dict[str, Any], **kwargs: Any) -> None:
    """train_fusion, except that a trial with FAILING_SEED raises before training."""
    _hold_after_reporting(config)
    if config.get("seed") == FAILING_SEED:
        raise RuntimeError(MESSAGE)
    train_fusion(config, **kwargs)


def held_stage(config: dict[str, Any], **kwargs: Any) -> None:
    """The CILP stage trial function, with the pause."""
    from tune_cilp.cilp import chain  # in the worker: the chain's own train_stage

    _hold_after_reporting(config)
    chain.train_stage(config, **kwargs)


if __name__ == "__main__":
    # Run as a script, Python puts tests/ first on sys.path, where the folder tests/analysis/
    # would pass for the analysis package (a namespace package) when the run prints its table.
    here = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != here]

    import tune_cilp.run

    tune_cilp.run.train_fusion = failing_on_seed
    if os.environ.get(PAUSE_STAGE):  # only then: the chain imports torch, a fusion run never
        import tune_cilp.cilp.chain

        tune_cilp.cilp.chain.train_stage = held_stage
    run_cli(tune_cilp.run.main)
