"""What a full disk leaves, repaired for the re-run: empty files go; a state Tune can resume from
stays (its trials resume from their own checkpoints); a state cut short -- or a checkpoint a
trial would resume from -- is set aside with tuner.pkl and the trial folders, so the folder holds
one experiment, and the re-run says in one line why it starts afresh. The files are made here in
Tune's own formats (cloudpickles named .json included); tests/experiment/test_full_disk.py
makes them with a real run on a real full disk."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import pytest

from tune_cilp.experiment.graceful_stop import storage_message
from tune_cilp.experiment.state_repair import check_before_resuming, repair_after_storage_failure

STATE = "experiment_state-2026-12-07_06-00-00.json"
SEARCHER = "basic-variant-state-2026-12-07_06-00-00.json"  # a cloudpickle, whatever its name
TRIALS = ("train_fusion_abc_00000", "train_fusion_abc_00001")
KEPT = ["tune_cilp.json", "wandb"]  # the tool's and W&B's: never set aside


def tune_state(named: str | None) -> str:
    """Tune's experiment state: both trials, the first resuming from checkpoint `named`."""
    trials = []
    for i, trial in enumerate(TRIALS):
        last = {"training_iteration": 1, "checkpoint_dir_name": named} if i == 0 and named else {}
        trials.append([json.dumps({"relative_logdir": trial}), json.dumps({"last_result": last})])
    return json.dumps({"trial_data": trials, "runner_data": {}})


def experiment_left_by_a_full_disk(root: Path) -> Path:
    """Tune's files as a run that hit a full disk while storing its second checkpoint leaves
    them: trial 0 with its first checkpoint whole and its second cut short (not in Tune's
    state), trial 1 with an empty file and an empty checkpoint folder; W&B's folder, the
    tool's identity."""
    root.mkdir()
    (root / STATE).write_text(tune_state("checkpoint_000000"))
    (root / SEARCHER).write_bytes(pickle.dumps({"_iterators": [], "_total_samples": 2}))
    (root / "tuner.pkl").write_bytes(pickle.dumps({"param_space": {"seed": 51}}))
    (root / "tune_cilp.json").write_text("{}")
    for trial in TRIALS:
        (root / trial / "checkpoint_000000").mkdir(parents=True)
        (root / trial / "params.json").write_text("{}")
        (root / trial / "result.json").write_text('{"epoch": 1}\n')
    first = root / TRIALS[0] / "checkpoint_000000"
    with zipfile.ZipFile(first / "state.pt", "w") as archive:  # torch.save's format
        archive.writestr("state/data.pkl", b"weights" * 1000)
    (first / "predictions.json").write_text('{"ids": []}')
    cut = root / TRIALS[0] / "checkpoint_000001"
    cut.mkdir()
    (cut / "state.pt").write_bytes((first / "state.pt").read_bytes()[:500])
    (root / TRIALS[1] / "checkpoint_000000" / "predictions.json").write_text("")
    (root / TRIALS[1] / "checkpoint_000001").mkdir()
    (root / "wandb" / "offline-run-1").mkdir(parents=True)
    return root


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_resumable_state_is_kept_and_only_empty_files_go(tmp_path: Path) -> None:
    root = experiment_left_by_a_full_disk(tmp_path / "exp")
    assert repair_after_storage_failure(str(root)) is None
    assert not (root / TRIALS[1] / "checkpoint_000000" / "predictions.json").exists()
    assert not (root / TRIALS[1] / "checkpoint_000001").exists()
    # The cut checkpoint Tune never named stays (the resumed trial stores it again); so do the
    # searcher's pickled state and the whole checkpoint the trial resumes from.
    assert (root / TRIALS[0] / "checkpoint_000001" / "state.pt").stat().st_size == 500
    assert zipfile.is_zipfile(root / TRIALS[0] / "checkpoint_000000" / "state.pt")
    assert (root / SEARCHER).exists() and (root / "tuner.pkl").exists()
    assert not list(root.glob("*.damaged"))
    assert check_before_resuming(str(root)) is None  # the re-run resumes, saying nothing


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda root: cut_in_half(root / STATE), f"{STATE} is cut short"),
        (lambda root: cut_in_half(root / SEARCHER), f"{SEARCHER} is cut short"),
        (lambda root: cut_in_half(root / "tuner.pkl"), "tuner.pkl is cut short"),
        (lambda root: (root / "tuner.pkl").unlink(), "tuner.pkl is missing"),
        (
            lambda root: cut_in_half(root / TRIALS[0] / "checkpoint_000000" / "state.pt"),
            f"{TRIALS[0]}/checkpoint_000000/state.pt is cut short",
        ),
        (
            lambda root: cut_in_half(root / TRIALS[0] / "checkpoint_000000" / "predictions.json"),
            f"{TRIALS[0]}/checkpoint_000000/predictions.json is cut short",
        ),
        (
            lambda root: (root / STATE).write_text(tune_state("checkpoint_000002")),
            f"{TRIALS[0]}/checkpoint_000002, which Tune resumes from, is gone",
        ),
    ],
    ids=["state", "searcher", "tuner", "no-tuner", "checkpoint", "predictions", "no-checkpoint"],
)
def test_what_tune_cannot_resume_from_goes_aside_with_the_trial_folders(
    damage, reason: str, tmp_path: Path
) -> None:
    root = experiment_left_by_a_full_disk(tmp_path / "exp")
    damage(root)
    aside = repair_after_storage_failure(str(root))
    assert aside is not None and aside.reason == reason
    folder = aside.folder
    assert folder.parent == root and folder.name.endswith(".damaged")
    assert sorted(p.name for p in root.iterdir()) == sorted([folder.name, *KEPT])
    tune_files = {STATE, SEARCHER, "tuner.pkl", *TRIALS}
    if reason == "tuner.pkl is missing":
        tune_files.remove("tuner.pkl")
    assert sorted(p.name for p in folder.iterdir()) == sorted(tune_files)
    assert (folder / TRIALS[0] / "result.json").read_text() == '{"epoch": 1}\n'
    assert not list(root.glob("*/result.json"))  # what lists trial folders sees none of them

    message = storage_message(OSError(28, "No space left on device"), str(root), aside)
    assert f"{reason}, so Tune cannot resume" in message and folder.name in message
    assert "\n" not in message
    assert message.endswith("re-run the same command to run the experiment again")


def test_the_rerun_says_in_one_line_why_it_starts_afresh(tmp_path: Path) -> None:
    """The damage found by the re-run (a driver killed as the disk filled never repaired it),
    and the re-run after a failed run set its state aside."""
    root = experiment_left_by_a_full_disk(tmp_path / "exp")
    cut_in_half(root / STATE)
    trial_files = {
        p.relative_to(root): p.read_bytes()
        for t in TRIALS
        for p in (root / t).rglob("*")
        if p.is_file()
    }
    note = check_before_resuming(str(root))
    (folder,) = root.glob("*.damaged")
    assert note == (
        f"note: {STATE} is cut short, so Tune cannot resume it: the experiment starts afresh "
        f"(its earlier state and trials are kept in {folder.name})"
    )
    for rel, data in trial_files.items():  # nothing of the trials deleted or rewritten
        assert (folder / rel).read_bytes() == data
    again = check_before_resuming(str(root))
    assert again == (
        "note: the experiment starts afresh: a storage failure cut Tune's saved state short "
        f"(the earlier state and trials are kept in {folder.name})"
    )
    assert sorted(p.name for p in root.iterdir()) == sorted([folder.name, *KEPT])


def test_a_second_failure_gets_a_folder_of_its_own(tmp_path: Path) -> None:
    root = experiment_left_by_a_full_disk(tmp_path / "exp")
    cut_in_half(root / STATE)
    first = repair_after_storage_failure(str(root))
    # A second failure in the same second: its own folder, the first one untouched.
    experiment_left_by_a_full_disk(tmp_path / "again")
    cut_in_half(tmp_path / "again" / STATE)
    for path in (tmp_path / "again").iterdir():
        if path.name not in KEPT:
            path.rename(root / path.name)
    second = repair_after_storage_failure(str(root))
    assert first is not None and second is not None and first.folder != second.folder
    assert len(list(first.folder.iterdir())) == 5 and len(list(second.folder.iterdir())) == 5


def test_a_folder_tune_never_wrote_to_says_nothing(tmp_path: Path) -> None:
    assert check_before_resuming(str(tmp_path)) is None
    assert repair_after_storage_failure(str(tmp_path)) is None
    assert list(tmp_path.iterdir()) == []


def test_a_tuner_and_trials_without_a_state_go_aside_before_a_fresh_start(tmp_path: Path) -> None:
    """A full disk (or a stop) before Tune's first state save: the empty state file goes, and
    tuner.pkl with the trial folders is set aside, so the fresh start's trials are not mixed
    with them (Tune would restore tuner.pkl without its search space)."""
    root = experiment_left_by_a_full_disk(tmp_path / "exp")
    (root / STATE).write_text("")
    aside = repair_after_storage_failure(str(root))
    assert aside is not None and aside.reason == "no experiment state was saved"
    assert sorted(p.name for p in aside.folder.iterdir()) == sorted(
        [SEARCHER, "tuner.pkl", *TRIALS]
    )
    assert sorted(p.name for p in root.iterdir()) == sorted([aside.folder.name, *KEPT])
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "tuner.pkl").write_bytes(b"x")
    note = check_before_resuming(str(tmp_path / "only"))
    assert note is not None and note.startswith("note: no experiment state was saved, so Tune")
