"""What a storage failure leaves in an experiment folder, repaired so that the re-run resumes the
trials from their own checkpoints wherever Tune can, and says in one line why where it cannot.

Tune copies its files from a staging folder to the storage path with pyarrow, which writes in
place: a full disk leaves files empty (Tune's records, a trial's files) or cut short (the
state.pt of the checkpoint that did not fit; Tune's experiment state, when it grew). Measured on
a 40 MiB tmpfs: the checkpoint being written is cut; Tune's state, tuner.pkl and the trials'
named checkpoints are whole, and Tune resumes from them. (The repair used to read every
`*-state-*.json` as JSON, but the searcher's basic-variant-state-*.json is a cloudpickle despite
its name: every full disk set the whole experiment aside and the re-run started afresh.)

A re-run can resume when the files Tune restores from are whole (checked without loading any
pickle: pickletools walks a pickle to its STOP opcode): tuner.pkl and the searcher and callback
states (cloudpickles), each experiment_state-*.json (JSON), and the checkpoint each trial resumes
from (named in the newest state's last result): its state.pt a whole zip (torch's format), its
JSON files whole. A checkpoint cut while being stored is not among these (Tune names a
checkpoint only once it is stored); the resumed trial stores it again, over the cut files.
Where one of them is cut, Tune cannot resume: the states, tuner.pkl and the trial folders are
set aside together in one `state-<time>.damaged` folder (never deleted), so the experiment
folder holds one experiment, and the re-run starts afresh, saying why.
"""

from __future__ import annotations

import contextlib
import json
import pickletools
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ray.tune.callback import CallbackList
from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint
from ray.tune.execution.tune_controller import TuneController
from ray.tune.impl.tuner_internal import _TUNER_PKL
from ray.tune.search import BasicVariantGenerator, Searcher, SearchGenerator

from tune_cilp.core.checkpoint import STATE_FILE
from tune_cilp.core.json_shape import json_object
from tune_cilp.experiment.race_search import RaceSearcher

STATE_GLOB = TuneController.CKPT_FILE_TMPL.format("*")  # JSON
PICKLED_GLOBS = tuple(  # cloudpickles, whatever their names end with
    cls.CKPT_FILE_TMPL.format("*")
    for cls in (BasicVariantGenerator, SearchGenerator, Searcher, CallbackList)
)
RACE_GLOB = RaceSearcher.CKPT_FILE_TMPL.format("*")  # JSON: a race's memory (--race)
ASIDE_SUFFIX = ".damaged"
PARAMS_FILE = "params.json"  # Tune writes it in each trial folder
CHECKPOINT_GLOB = "checkpoint_[0-9]*"  # a trial's checkpoint folders


@dataclass(frozen=True)
class SetAside:
    """An experiment's state set aside: where it went, and why Tune could not resume it."""

    folder: Path
    reason: str  # e.g. "experiment_state-....json is cut short"


def repair_after_storage_failure(experiment_dir: str) -> SetAside | None:
    """Right after a storage failure: delete the empty files it left (they break resuming and
    the analysis, and hold nothing) and the checkpoint folders left empty; where Tune could not
    resume from what remains, set it aside (see the module docstring). None when the re-run
    resumes."""
    root = Path(experiment_dir)
    candidates = [*root.glob("*.json"), *root.glob("*.pkl")]
    for trial_dir in (d for d in root.iterdir() if d.is_dir()):
        candidates += trial_dir.rglob("*")
    for path in candidates:
        if path.is_file() and path.stat().st_size == 0:
            with contextlib.suppress(OSError):
                path.unlink()
    for folder in root.glob("*/checkpoint_*"):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty
    reason = why_not_resumable(root)
    return None if reason is None else SetAside(set_aside(root), reason)


def check_before_resuming(experiment_dir: str) -> str | None:
    """Before a re-run decides between resuming and starting afresh: where Tune could not
    resume from the stored state, set it aside. The one line that says why the re-run starts
    afresh (also after a failed run set its state aside), None when there is nothing to say."""
    root = Path(experiment_dir)
    reason = why_not_resumable(root)
    if reason is not None:
        aside = set_aside(root)
        return (
            f"note: {reason}, so Tune cannot resume it: the experiment starts afresh (its "
            f"earlier state and trials are kept in {aside.name})"
        )
    if _tune_files(root):
        return None
    earlier = sorted(root.glob(f"state-*{ASIDE_SUFFIX}"))
    if not earlier:
        return None
    return (
        f"note: the experiment starts afresh: a storage failure cut Tune's saved state short "
        f"(the earlier state and trials are kept in {earlier[-1].name})"
    )


def why_not_resumable(root: Path) -> str | None:
    """Why Tune cannot resume the experiment in `root` from what is stored (a file cut short or
    missing); None when it can, or when no experiment was stored there."""
    states = sorted(root.glob(STATE_GLOB))
    if not states:
        # tuner.pkl or trial folders but no state (a stop or a full disk before Tune's first
        # state save): Tune would restore without the search space; set aside, not mixed in.
        if (root / _TUNER_PKL).exists() or _trial_dirs(root):
            return "no experiment state was saved"
        return None
    for path in [*states, *sorted(root.glob(RACE_GLOB))]:
        if not _whole_json(path):
            return f"{path.name} is cut short"
    for path in [root / _TUNER_PKL, *(p for g in PICKLED_GLOBS for p in sorted(root.glob(g)))]:
        if not path.is_file():
            return f"{path.name} is missing"
        if not _whole_pickle(path):
            return f"{path.name} is cut short"
    for checkpoint in _resumed_checkpoints(root):
        if not checkpoint.is_dir():
            return f"{checkpoint.parent.name}/{checkpoint.name}, which Tune resumes from, is gone"
        for path in checkpoint.iterdir():
            if not (path.suffix != ".json" or _whole_json(path)) or (
                path.name == STATE_FILE and not zipfile.is_zipfile(path)
            ):
                return f"{checkpoint.parent.name}/{checkpoint.name}/{path.name} is cut short"
    return None


def set_aside(root: Path) -> Path:
    """Move Tune's state files, tuner.pkl and the trial folders (those Tune wrote params.json
    into; W&B's and the tool's own files stay) into one new `state-<time>.damaged` folder."""
    trials = _trial_dirs(root)
    states = [
        *root.glob(STATE_GLOB),
        *root.glob(RACE_GLOB),
        *(p for g in PICKLED_GLOBS for p in root.glob(g)),
    ]
    stamp, n = time.strftime("state-%Y%m%d-%H%M%S", time.gmtime()), 0
    while (aside := root / f"{stamp}{f'-{n}' if n else ''}{ASIDE_SUFFIX}").exists():
        n += 1  # a second failure within the same second: never mix two set-aside states
    aside.mkdir()
    for path in [*states, root / _TUNER_PKL, *trials]:
        with contextlib.suppress(OSError):
            path.rename(aside / path.name)
    return aside


def _trial_dirs(root: Path) -> list[Path]:
    """The trial folders: those Tune wrote params.json into, and those a trial's worker stored a
    checkpoint in before the driver's copy brought params.json (a disk that filled between the
    two left such a folder: seen in CI)."""
    if not root.is_dir():
        return []
    return [
        d
        for d in root.iterdir()
        if d.is_dir() and ((d / PARAMS_FILE).is_file() or any(d.glob(CHECKPOINT_GLOB)))
    ]


def _tune_files(root: Path) -> bool:
    return (root / _TUNER_PKL).exists() or any(root.glob(STATE_GLOB))


def _resumed_checkpoints(root: Path) -> list[Path]:
    """The checkpoint folder each trial of the newest state resumes from (its last result's)."""
    newest = _find_newest_experiment_checkpoint(str(root))
    found = []
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError, AttributeError):
        state = json_object(_regular(Path(newest)).read_text())
        for trial_json, meta_json in state["trial_data"]:
            trial, meta = json_object(trial_json), json_object(meta_json)
            name = (meta.get("last_result") or {}).get("checkpoint_dir_name")
            if isinstance(name, str) and isinstance(trial.get("relative_logdir"), str):
                found.append(root / trial["relative_logdir"] / name)
    return found


def _whole_json(path: Path) -> bool:
    try:
        json.loads(_regular(path).read_bytes())
    except (OSError, ValueError):
        return False
    return True


def _whole_pickle(path: Path) -> bool:
    """Whether `path` holds a pickle to its end (its opcodes read to STOP, nothing executed)."""
    try:
        with open(_regular(path), "rb") as f:
            for _ in pickletools.genops(f):
                pass
    except Exception:  # cut short (ValueError) or not a pickle at all
        return False
    return True


def _regular(path: Path) -> Path:
    """`path`, if it is a regular file (a FIFO would block the read): else OSError."""
    if not path.is_file():
        raise OSError(f"{path}: not a regular file")
    return path
