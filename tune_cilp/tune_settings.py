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
"""

from __future__ import annotations

import os

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

_NO_DEFAULT_LOGGERS = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"
LOCAL_SYNC_PERIOD_S = "1"


def apply_tune_settings(local: bool) -> None:
    """Tune's environment switches for a run on `local` (or NFS) storage or a URI; a value the
    user set is kept."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's classic status table (CLIReporter)
    # The state snapshots above would each warn that they are frequent.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if local:
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", LOCAL_SYNC_PERIOD_S)


def result_loggers(restoring: bool, tensorboard: bool = False) -> list[object]:
    """The logger callbacks for a new experiment (none for a resumed one, see the module
    docstring); sets Tune's switch for its default loggers to match. Call before each fit."""
    if restoring:
        os.environ.pop(_NO_DEFAULT_LOGGERS, None)
        return []
    os.environ[_NO_DEFAULT_LOGGERS] = "1"
    loggers: list[object] = [JsonLoggerCallback(), CSVLoggerCallback()]
    if tensorboard:
        from ray.tune.logger import TBXLoggerCallback

        loggers.append(TBXLoggerCallback())
    return loggers
