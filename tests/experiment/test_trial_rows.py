"""Trimming a trial's rows to Tune's saved state: the files' own format kept, damaged lines
left for the analysis to report, nothing rewritten when nothing is ahead. (The real case, a
killed driver's experiment, is in test_faults.py.)"""

from __future__ import annotations

import json
from pathlib import Path

from tune_cilp.experiment.trial_rows import saved_iterations, trim_unsaved_rows


def _experiment(tmp_path: Path, saved: dict[str, int | None], rows: int) -> Path:
    """An experiment directory as Tune 2.60 writes it: the state's trial_data holds each
    trial's JSON state and its JSON run metadata (with last_result)."""
    trial_data = [
        [
            json.dumps({"trial_id": tid}),
            json.dumps({"last_result": {} if it is None else {"training_iteration": it}}),
        ]
        for tid, it in saved.items()
    ]
    (tmp_path / "experiment_state-2026-12-02_10-00-00.json").write_text(
        json.dumps({"trial_data": trial_data, "runner_data": {}, "stats": {}})
    )
    for tid in saved:
        trial = tmp_path / f"train_{tid}"
        trial.mkdir()
        lines = [json.dumps({"trial_id": tid, "epoch": i, "training_iteration": i}) + "\n"
                 for i in range(1, rows + 1)]  # fmt: skip
        (trial / "result.json").write_text("".join(lines))
        csv = "epoch,training_iteration,trial_id\r\n" + "".join(
            f"{i},{i},{tid}\r\n" for i in range(1, rows + 1)
        )
        (trial / "progress.csv").write_bytes(csv.encode())
    return tmp_path


def test_rows_past_the_saved_state_are_dropped(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path, {"a": 2, "b": 4, "c": None}, rows=4)
    assert saved_iterations(experiment) == {"a": 2, "b": 4, "c": 0}
    untouched = (experiment / "train_b" / "result.json").stat().st_mtime_ns
    messages = trim_unsaved_rows(experiment)
    assert len(messages) == 2
    assert messages[0].startswith("train_a: 2 epoch(s)") and messages[1].startswith("train_c: 4")
    epochs = [json.loads(line)["epoch"] for line in (experiment / "train_a/result.json").open()]
    assert epochs == [1, 2]
    assert (experiment / "train_a/progress.csv").read_bytes() == (
        b"epoch,training_iteration,trial_id\r\n1,1,a\r\n2,2,a\r\n"
    )
    assert (experiment / "train_c/result.json").read_text() == ""
    assert (experiment / "train_b" / "result.json").stat().st_mtime_ns == untouched
    assert trim_unsaved_rows(experiment) == []  # a second pass finds nothing


def test_a_damaged_line_is_kept_and_no_state_changes_nothing(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path, {"a": 1}, rows=2)
    result = experiment / "train_a" / "result.json"
    result.write_text(result.read_text() + '{"trial_id": "a", "epo')
    trim_unsaved_rows(experiment)
    assert result.read_text().splitlines()[1:] == ['{"trial_id": "a", "epo']
    (experiment / "experiment_state-2026-12-02_10-00-00.json").write_text("{not json")
    before = result.read_text()
    assert saved_iterations(experiment) == {} and trim_unsaved_rows(experiment) == []
    assert result.read_text() == before


def test_with_checkpoint_every_rows_after_the_last_saved_checkpoint_go(tmp_path: Path) -> None:
    # --checkpoint-every 2: reports 2 and 4 carry checkpoints; the state knows report 3, so Tune
    # resumes from report 2's checkpoint and reports 3 again: row 3 (and 4, unknown) go.
    experiment = _experiment(tmp_path, {"a": 3}, rows=4)
    result = experiment / "train_a" / "result.json"
    rows = [json.loads(line) for line in result.open()]
    for row in rows:
        row["checkpoint_dir_name"] = f"checkpoint_{row['epoch'] // 2 - 1:06d}" if row[
            "epoch"] % 2 == 0 else None  # fmt: skip
    result.write_text("".join(json.dumps(row) + "\n" for row in rows))
    (message,) = trim_unsaved_rows(experiment)
    assert message == (
        "train_a: 2 epoch(s) reported after the last saved checkpoint are trained and reported "
        "again"
    )
    assert [json.loads(line)["epoch"] for line in result.open()] == [1, 2]
    assert (experiment / "train_a/progress.csv").read_bytes().count(b"\r\n") == 3
