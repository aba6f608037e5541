"""How the runner and the CILP chain set Ray Tune up: its status table, how soon results reach
the storage path, and the files it writes for every trial.

Results: Tune writes result.json into a staging directory and copies it to the storage path
with its experiment state, by default at most every 10 s or after num_to_keep checkpoints of a
trial. A run's first epoch reached the storage path one epoch after its checkpoint (measured:
checkpoint at 16.5 s, result.json at 22 s; benchmarks/README.md). On a local or NFS path a copy
takes milliseconds, so it is made every second; on a URI (object stores bill by request) Tune
keeps its own pace.

Files: result.json and progress.csv (what analysis reads), and TensorBoard event files only
with --tensorboard. Tune's default loggers include TensorBoard's, and tensorboardX imports
torch into the driver as the run starts: ~2 s on 2 cores before the first trial can be placed
(benchmarks/README.md, profile_startup), for files nothing here reads. So a new experiment
names its loggers itself.
A resumed one keeps the loggers it was made with (Tune stores them with the experiment) and Tune
adds any default it lacks: an experiment made before this still gets its result.json.

Tune reads these switches from the environment. One process may run several experiments (the
CILP chain, a notebook, the tests), local and URI, new and resumed, so the switches are set
for each fit from what the user had set when this module was imported, never from what the
previous fit left behind.
"""

from __future__ import annotations

import os

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

STATUS_TABLE = "RAY_AIR_NEW_OUTPUT"
SYNC_WARNING = "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"
SYNC_PERIOD = "TUNE_GLOBAL_CHECKPOINT_S"
NO_DEFAULT_LOGGERS = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"
LOCAL_SYNC_PERIOD_S = "1"

# The user's own values (None = not set), read once, before any fit here has set them.
_SWITCHES = (STATUS_TABLE, SYNC_WARNING, SYNC_PERIOD, NO_DEFAULT_LOGGERS)
_USER = {key: os.environ.get(key) for key in _SWITCHES}


def tune_environment(local: bool, restoring: bool) -> dict[str, str | None]:
    """The switches for one fit on `local` (or NFS) storage or a URI, new or `restoring`
    (None = unset); a value the user set wins."""
    ours: dict[str, str | None] = {
        STATUS_TABLE: "0",  # Tune's classic status table (CLIReporter)
        SYNC_WARNING: "0",  # the frequent state snapshots below would each warn
        SYNC_PERIOD: LOCAL_SYNC_PERIOD_S if local else None,
        NO_DEFAULT_LOGGERS: None if restoring else "1",  # see result_loggers
    }
    return {key: _USER[key] if _USER[key] is not None else value for key, value in ours.items()}


def apply_tune_settings(local: bool, restoring: bool) -> None:
    """Set Tune's environment switches for the next fit (call before building its Tuner)."""
    for key, value in tune_environment(local, restoring).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def result_loggers(tensorboard: bool = False) -> list[object]:
    """The logger callbacks of a new experiment: JSON and CSV, TensorBoard's only if asked."""
    loggers: list[object] = [JsonLoggerCallback(), CSVLoggerCallback()]
    if tensorboard:
        from ray.tune.logger import TBXLoggerCallback

        loggers.append(TBXLoggerCallback())
    return loggers
