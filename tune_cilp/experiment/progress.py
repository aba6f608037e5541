"""What a run prints while it trains: one line per trial (epoch n / N, the latest value of the
experiment's metric, the trial's ETA) and one for the experiment (epochs done of all, trials
finished, its ETA); a failed trial is one line. Ray's full status table only with --verbose.

In a terminal the block of lines is redrawn in place (at most once a second) and a trial that
ends leaves one line above it; anywhere else (a log file, a pipe) nothing is redrawn: plain
lines are appended, a trial's when it has a new epoch (at most every LOG_EVERY_S) or ends, the
experiment's with them.

Tune pickles its progress reporter into the experiment (tuner.pkl) and ``Tuner.restore`` unpickles
it; a reporter pickles as a reference to this process's (``current()``), so a resumed experiment
prints the way this run asked, not the way the run that made it did.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from ray import tune

REDRAW_EVERY_S = 1.0
LOG_EVERY_S = 10.0
ENDED = ("TERMINATED", "ERROR")


def duration(seconds: float) -> str:
    """12s, 4m05s, 1h02m; "?" when not known yet."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _shown(value: Any) -> str:
    """A config value in a trial's name: packed seeds (--pack) as 51+52."""
    return "+".join(map(str, value)) if isinstance(value, list) else str(value)


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"


class _Table(tune.CLIReporter):
    """Ray's status table. Its "current best trial" line reads a trial's config from the trial's
    last result, which a resumed trial's may lack (KeyError, seen in CI after a driver was killed
    and its state rolled back); the trial's own config is given there first."""

    def report(self, trials: list[Any], done: bool, *sys_info: str) -> None:
        for trial in trials:
            trial.last_result.setdefault("config", trial.config)
        super().report(trials, done, *sys_info)


class Progress(tune.ProgressReporter):
    """Tune's progress reporter for this process (see the module docstring); `configure` it for
    each experiment before its Tuner is built or restored."""

    def __reduce__(self) -> tuple:
        return (current, ())

    def __init__(self) -> None:
        self.configure()

    def configure(
        self,
        *,
        verbose: bool = False,
        name_keys: Sequence[str] = (),
        epochs_of: Callable[[Mapping[str, Any]], int] | None = None,
        status_columns: Mapping[str, str] | None = None,
        stream: TextIO | None = None,
    ) -> None:
        """verbose: Ray's table (CLIReporter) instead; name_keys: the config keys that name a
        trial ("concat maxpool 51"); epochs_of: a trial config's epoch count (default: its
        "epochs"); status_columns: the table's metric columns (--verbose)."""
        self.verbose = verbose
        self.name_keys = tuple(name_keys)
        self.epochs_of = epochs_of or (lambda config: int(config.get("epochs") or 0))
        self.status_columns = dict(status_columns or {})
        self.stream = stream
        self.table: _Table | None = None
        self.metric = "val_loss"
        self.total_samples = 0
        self.started = time.time()
        self.last_draw = -math.inf
        self.drawn = 0  # lines of the live block on screen (terminal)
        self.seen: dict[str, tuple[int, str]] = {}  # trial id -> (epochs, status) last printed
        self.epochs_at_start: int | None = None  # epochs done when this run began (a resume)

    @property
    def out(self) -> TextIO:
        return self.stream or sys.stdout

    @property
    def live(self) -> bool:
        return self.out.isatty()

    def setup(
        self,
        start_time: float | None = None,
        total_samples: int | None = None,
        metric: str | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.started = start_time or time.time()
        self.total_samples = total_samples or 0
        self.metric = metric or self.metric
        if self.verbose:
            self.table = _Table(
                metric_columns=self.status_columns,
                parameter_columns=list(self.name_keys),
                max_report_frequency=10,
                sort_by_metric=True,
                print_intermediate_tables=True,  # the trials' table too, not just the summary
            )
            self.table.setup(self.started, total_samples, metric, mode, **kwargs)

    def should_report(self, trials: list[Any], done: bool = False) -> bool:
        if self.table is not None:
            return self.table.should_report(trials, done)
        now = time.time()
        if done:
            return True
        if self.live:
            return now - self.last_draw >= REDRAW_EVERY_S
        changed = [t for t in trials if self.seen.get(t.trial_id) != self._state(t)]
        ended = any(t.status in ENDED for t in changed)
        return bool(changed) and (ended or now - self.last_draw >= LOG_EVERY_S)

    def report(self, trials: list[Any], done: bool, *sys_info: str) -> None:
        if self.table is not None:
            self.table.report(trials, done, *sys_info)
            return
        self.last_draw = time.time()
        lines = self._ended_lines(trials)
        running = [t for t in trials if t.status not in ENDED]
        if self.live:
            block = [self.trial_line(t) for t in running if self._epochs(t)]
            self._redraw(lines, [*block, self.summary(trials, done)])
            return
        changed = [t for t in running if self.seen.get(t.trial_id) != self._state(t)]
        lines += [self.trial_line(t) for t in changed if self._epochs(t)]
        for t in changed:
            self.seen[t.trial_id] = self._state(t)
        if lines or done:
            self._print([*lines, self.summary(trials, done)])

    def _ended_lines(self, trials: list[Any]) -> list[str]:
        """One line for each trial that ended since the last report."""
        lines = []
        for t in trials:
            if t.status in ENDED and self.seen.get(t.trial_id, (0, ""))[1] != t.status:
                self.seen[t.trial_id] = self._state(t)
                lines.append(self.trial_line(t))
        return lines

    def _state(self, trial: Any) -> tuple[int, str]:
        return self._epochs(trial), trial.status

    @staticmethod
    def _epochs(trial: Any) -> int:
        return int((trial.last_result or {}).get("training_iteration") or 0)

    def name(self, trial: Any) -> str:
        config = trial.config or {}
        parts = [_shown(config[k]) for k in self.name_keys if k in config]
        return " ".join(parts) or str(trial.trial_id)

    def trial_line(self, trial: Any) -> str:
        result = trial.last_result or {}
        n, total = self._epochs(trial), self._total(trial)
        head = f"  {self.name(trial):<26} epoch {n}/{total or '?'}"
        metric = f"{self.metric} {_value(result.get(self.metric))}"
        if trial.status == "ERROR":
            where = getattr(trial, "path", None) or "its directory"
            return f"{head}  {metric}  failed (error.txt in {where})"
        if trial.status == "TERMINATED":
            took = duration(result.get("time_total_s", math.nan))
            stopped = "" if total and n >= total else "  stopped early"
            return f"{head}  {metric}  done in {took}{stopped}"
        per_epoch = result.get("time_total_s", math.nan) / n if n else math.nan
        return f"{head}  {metric}  ETA {duration(per_epoch * (total - n))}"

    def _total(self, trial: Any) -> int:
        try:
            return int(self.epochs_of(trial.config or {}))
        except Exception:  # a config this wing cannot read: no total, no ETA
            return 0

    def summary(self, trials: list[Any], done: bool) -> str:
        """The experiment's line: epochs done of all, trials ended, its ETA at this run's pace."""
        # num_samples -1 (a searcher that says when it is done, --race): the trials so far
        open_ended = self.total_samples >= sys.maxsize
        count = len(trials) if open_ended else max(self.total_samples, len(trials))
        totals = [self._total(t) for t in trials]
        known = [n for n in totals if n]
        mean = sum(known) / len(known) if known else 0.0
        # A trial that ended (stopped early included) needs no more epochs.
        needed = [
            self._epochs(t) if t.status in ENDED else (n or mean)
            for t, n in zip(trials, totals, strict=True)
        ]
        total = sum(needed) + mean * (count - len(trials))
        epochs = sum(self._epochs(t) for t in trials)
        if self.epochs_at_start is None:
            self.epochs_at_start = epochs
        ended = sum(t.status in ENDED for t in trials)
        elapsed = time.time() - self.started
        if done:
            return (
                f"experiment: {ended}/{count} trials ended, {epochs} epochs in {duration(elapsed)}"
            )
        rate = (epochs - self.epochs_at_start) / elapsed if elapsed > 0 else 0.0
        eta = (total - epochs) / rate if rate > 0 else math.nan
        share = f" ({epochs / total:.0%})" if total else ""
        so_far = " started so far" if open_ended else ""
        return (
            f"experiment: epoch {epochs}/{round(total)}{share}, {ended}/{count} trials"
            f"{so_far} ended, {duration(elapsed)} so far, ETA {duration(eta)}"
            + (" (of these)" if open_ended else "")
        )

    def _redraw(self, permanent: list[str], block: list[str]) -> None:
        # Up to the block's first line, clear to the end of the screen, print anew.
        up = f"\x1b[{self.drawn}F\x1b[J" if self.drawn else ""
        self.out.write(up + "".join(f"{line}\n" for line in [*permanent, *block]))
        self.out.flush()
        self.drawn = len(block)

    def _print(self, lines: list[str]) -> None:
        self.out.write("".join(f"{line}\n" for line in lines))
        self.out.flush()


_CURRENT = Progress()


def current() -> Progress:
    """This process's reporter (what a pickled one becomes)."""
    return _CURRENT
