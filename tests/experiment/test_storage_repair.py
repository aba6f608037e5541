"""What a full disk leaves, repaired for the re-run: empty files go, and a Tune state cut short
is set aside together with tuner.pkl and its trial folders, so the folder holds one experiment."""

from __future__ import annotations

import json
from pathlib import Path

from tune_cilp.experiment.graceful_stop import repair_after_storage_failure, storage_message


def experiment_left_by_a_full_disk(root: Path, cut_state: bool) -> Path:
    """Tune's files as a run that hit a full disk leaves them: two trials (one with an empty
    checkpoint file and an empty checkpoint folder), W&B's folder, the tool's identity."""
    root.mkdir()
    state = json.dumps({"trial_data": [], "runner_data": {}})
    (root / "experiment_state-2026-12-07_06-00-00.json").write_text(
        state[:10] if cut_state else state
    )
    (root / "basic-variant-state-2026-12-07_06-00-00.json").write_text("{}")
    (root / "tuner.pkl").write_bytes(b"\x80\x05N.")
    (root / "tune_cilp.json").write_text("{}")
    for i in range(2):
        trial = root / f"train_fusion_abc_0000{i}"
        (trial / "checkpoint_000000").mkdir(parents=True)
        (trial / "params.json").write_text("{}")
        (trial / "result.json").write_text('{"epoch": 1}\n')
        (trial / "checkpoint_000000" / "state.pt").write_bytes(b"weights")
    (root / "train_fusion_abc_00001" / "checkpoint_000001").mkdir()
    (root / "train_fusion_abc_00001" / "checkpoint_000000" / "predictions.json").write_text("")
    (root / "wandb" / "offline-run-1").mkdir(parents=True)
    return root


def test_a_whole_state_is_kept_and_only_empty_files_go(tmp_path: Path) -> None:
    root = experiment_left_by_a_full_disk(tmp_path / "exp", cut_state=False)
    assert repair_after_storage_failure(str(root)) is None
    trial = root / "train_fusion_abc_00001"
    assert not (trial / "checkpoint_000000" / "predictions.json").exists()
    assert not (trial / "checkpoint_000001").exists()
    assert (trial / "checkpoint_000000" / "state.pt").read_bytes() == b"weights"
    assert (root / "tuner.pkl").exists() and not list(root.glob("*.damaged"))


def test_a_cut_state_goes_aside_with_its_trial_folders(tmp_path: Path) -> None:
    root = experiment_left_by_a_full_disk(tmp_path / "exp", cut_state=True)
    aside = repair_after_storage_failure(str(root))
    assert aside is not None and aside.parent == root and aside.name.endswith(".damaged")
    assert sorted(p.name for p in root.iterdir()) == sorted([aside.name, "tune_cilp.json", "wandb"])
    assert sorted(p.name for p in aside.iterdir()) == [
        "basic-variant-state-2026-12-07_06-00-00.json",
        "experiment_state-2026-12-07_06-00-00.json",
        "train_fusion_abc_00000",
        "train_fusion_abc_00001",
        "tuner.pkl",
    ]
    assert (aside / "train_fusion_abc_00000" / "result.json").read_text() == '{"epoch": 1}\n'
    assert not list(root.glob("*/result.json"))  # what lists trial folders sees none of them

    # A second failure in the same second: its own folder, the first one untouched.
    experiment_left_by_a_full_disk(tmp_path / "again", cut_state=True)
    for path in (tmp_path / "again").iterdir():
        if path.name not in ("tune_cilp.json", "wandb"):
            path.rename(root / path.name)
    second = repair_after_storage_failure(str(root))
    assert second is not None and second != aside
    assert len(list(aside.iterdir())) == 5 and len(list(second.iterdir())) == 5

    message = storage_message(OSError(28, "No space left on device"), str(root), aside)
    assert f"set aside in {aside.name}" in message and "\n" not in message
    assert message.endswith("re-run the same command to run the experiment again")
