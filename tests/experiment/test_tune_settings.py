"""Tune's environment switches: set per fit, never inherited from the previous fit, the user's
own values kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import saved_environ

from tune_cilp.experiment.tune_settings import (
    NO_DEFAULT_LOGGERS,
    SYNC_PERIOD,
    apply_tune_settings,
    result_loggers,
)


def test_each_fit_gets_its_own_switches() -> None:
    with saved_environ():
        for key in (SYNC_PERIOD, NO_DEFAULT_LOGGERS):
            os.environ.pop(key, None)
        apply_tune_settings(local=True, restoring=False)
        assert os.environ[SYNC_PERIOD] == "1"
        assert os.environ[NO_DEFAULT_LOGGERS] == "1"
        # A URI experiment next in the same process (a notebook, the CILP chain): Tune's own
        # pace again, not the local run's 1 s; a resumed one gets Tune's default loggers.
        apply_tune_settings(local=False, restoring=True)
        assert SYNC_PERIOD not in os.environ
        assert NO_DEFAULT_LOGGERS not in os.environ


def test_the_users_values_win() -> None:
    env = {**os.environ, SYNC_PERIOD: "30", NO_DEFAULT_LOGGERS: "0"}
    code = (
        "import json; from tune_cilp.experiment.tune_settings import tune_environment as t; "
        "print(json.dumps([t(True, False), t(False, True)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout
    for switches in json.loads(out):
        assert switches[SYNC_PERIOD] == "30"
        assert switches[NO_DEFAULT_LOGGERS] == "0"


def test_new_experiments_name_their_loggers() -> None:
    names = [type(cb).__name__ for cb in result_loggers()]
    assert names == ["JsonLoggerCallback", "CSVLoggerCallback"]
    assert [type(cb).__name__ for cb in result_loggers(tensorboard=True)][-1] == (
        "TBXLoggerCallback"
    )
