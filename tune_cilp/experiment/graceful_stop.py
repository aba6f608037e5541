"""How a run stops early: at the end of an epoch on Ctrl-C, at once on a full or read-only disk.

Ray Tune's own first Ctrl-C ends the run at once (each running trial loses the epoch in
progress) and then tells the user to call ``Tuner.restore(...)``. Here the first SIGINT or
SIGTERM lets every running trial finish and checkpoint its current epoch, then ends the run
through Tune's own graceful stop (SIGUSR1: Tune saves the experiment state one last time, so a
re-run of the same command resumes); a second signal stops at once. A trial that fails because
the storage is full, read-only or not permitted ends the whole run the same way, so the other
trials do not go on failing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ray import cloudpickle, tune

from tune_cilp.core.path_guard import STORAGE_ERRNOS
from tune_cilp.experiment.state_repair import SetAside, repair_after_storage_failure

INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)
INTERRUPTED = "interrupted: re-run the same command to resume"
QUIET_WHEN_STOPPING = (
    "Tuner.restore(",
    "Stop signal received",
    "Trials did not complete",
    "Trial task failed",
)


def storage_errno(exc: BaseException | None) -> OSError | None:
    """The first OSError with a STORAGE_ERRNOS code in exc's chain (causes, Ray task errors)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


def _trial_exception(trial: Any) -> BaseException | None:
    """A failed trial's exception, from the driver's local copy of its error file."""
    local = getattr(trial, "local_path", None)
    if not local:
        return None
    try:
        return cloudpickle.loads((Path(local) / "error.pkl").read_bytes())
    except Exception:  # absent, or written by another Ray version: no storage verdict
        return None


class GracefulStop(tune.Callback):
    """Tune callback + signal handler (see the module docstring); use inside ``installed()``.

    Tune pickles its callbacks into the experiment (tuner.pkl) and ``Tuner.restore`` unpickles
    them; an instance pickles as a reference to the current process's one (``current()``), so a
    restored experiment reports to the handler this driver installed.
    """

    def __reduce__(self) -> tuple:
        return (current, ())

    def __init__(self) -> None:
        self.interrupted = False
        self.storage_error: OSError | None = None
        self._running: set[str] = set()
        self._waiting: set[str] = set()
        self._stop_sent = False

    # Signals --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def installed(self) -> Iterator[GracefulStop]:
        """Our SIGINT/SIGTERM handler for the ``with`` block (Tune's own one is disabled)."""
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        previous = {sig: signal.signal(sig, self._on_signal) for sig in INTERRUPT_SIGNALS}
        previous[signal.SIGUSR1] = signal.getsignal(signal.SIGUSR1)  # fit() installs Tune's
        log_filter = _RayLogFilter(self)
        # On the handlers: a logger's own filters do not apply to its children's records.
        handlers = [*logging.getLogger("ray").handlers, *logging.getLogger().handlers]
        for handler in handlers:
            handler.addFilter(log_filter)
        try:
            yield self
        finally:
            for handler in handlers:
                handler.removeFilter(log_filter)
            for sig, handler in previous.items():
                if handler is not None:  # None: set outside Python (Ray's C++ core worker)
                    signal.signal(sig, handler)

    def stopped_exit_code(self, experiment_dir: str, local: bool = True) -> int | None:
        """After a run: for a storage failure (repaired for the re-run) or an interrupt, print
        its one line and return the exit code (1, 130); None when the run was not stopped."""
        if self.storage_error is not None:
            set_aside = repair_after_storage_failure(experiment_dir) if local else None
            message = storage_message(self.storage_error, experiment_dir, set_aside)
            print(f"error: {message}", file=sys.stderr)
            return 1
        if self.interrupted:
            print(INTERRUPTED, file=sys.stderr)
            return 130
        return None

    def reinstall(self) -> None:
        """Our SIGINT/SIGTERM handler again, after a library replaced it."""
        for sig in INTERRUPT_SIGNALS:
            signal.signal(sig, self._on_signal)

    def note(self, exc: BaseException | None) -> None:
        """Record a storage failure seen in ``exc`` (if it is one) and stop the run."""
        failure = storage_errno(exc)
        if failure is not None and self.storage_error is None:
            self.storage_error = failure
            self._waiting = set()
            self._stop_if_done()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.interrupted:
            raise KeyboardInterrupt  # the second one: stop at once
        self.interrupted = True
        print(
            "interrupt: stopping once the running trials save their next checkpoint (at the "
            "end of the current epoch unless --checkpoint-every spaces them; press Ctrl-C again "
            "to stop at once)",
            file=sys.stderr,
            flush=True,
        )
        self._waiting = set(self._running)
        self._stop_if_done()

    def _stop_if_done(self) -> None:
        # SIGUSR1 is Tune's graceful stop, handled only while Tuner.fit() runs; outside it the
        # default action would kill this process.
        if self._waiting or self._stop_sent or signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL:
            return
        self._stop_sent = True
        os.kill(os.getpid(), signal.SIGUSR1)

    # Tune callback hooks --------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.interrupted or self.storage_error is not None:
            return  # started after the stop request: it is stopped with the rest
        self._running.add(trial.trial_id)

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._done_with(trial)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._running.discard(trial.trial_id)
        self._done_with(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._running.discard(trial.trial_id)
        self.note(_trial_exception(trial))
        self._done_with(trial)

    def _done_with(self, trial: Any) -> None:
        if self.interrupted or self.storage_error is not None:
            self._waiting.discard(trial.trial_id)
            self._stop_if_done()


class _RayLogFilter(logging.Filter):
    """Drops Ray's multi-line logs that this run replaces with one line of its own: tracebacks
    of storage failures (and stops the run on one), and the ``Tuner.restore(...)`` hint and
    "Trials did not complete" list after an interrupt."""

    def __init__(self, stop: GracefulStop):
        super().__init__()
        self.stop = stop

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and storage_errno(record.exc_info[1]) is not None:
            self.stop.note(record.exc_info[1])
            return False
        if self.stop.interrupted or self.stop.storage_error is not None:
            text = record.getMessage()
            return not any(phrase in text for phrase in QUIET_WHEN_STOPPING)
        return True


def storage_message(exc: OSError, where: str, set_aside: SetAside | None = None) -> str:
    """The one line for a storage failure: what, where, and how to go on (`set_aside`: where
    the damaged state and its trials went and why, when the re-run starts over)."""
    what = STORAGE_ERRNOS.get(exc.errno or 0, exc.strerror or "storage error")
    path = exc.filename or where
    if set_aside is not None:
        return (
            f"{what} writing {path}: {set_aside.reason}, so Tune cannot resume the experiment "
            f"(its state and trials are set aside in {set_aside.folder.name}); fix the storage "
            "and re-run the same command to run the experiment again"
        )
    return f"{what} writing {path}: fix the storage and re-run the same command to resume"


_CURRENT: GracefulStop | None = None


def fresh() -> GracefulStop:
    """A new controller for this driver's run; ``current()`` returns it from now on."""
    global _CURRENT
    _CURRENT = GracefulStop()
    return _CURRENT


def current() -> GracefulStop:
    """This driver's controller (what a pickled GracefulStop turns into when loaded)."""
    return _CURRENT if _CURRENT is not None else fresh()
