"""--pack with real Ray on tiny data: trials of packed seeds give the analysis the same seeds, with
the same numbers within 1e-5, as one trial per seed; a packed run stopped by Ctrl-C resumes to
the uninterrupted packed run's results, every epoch reported once."""

from __future__ import annotations

import json
import math
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import RayEnv, finish, histories, run_analysis, run_command, start, wait_for

pytestmark = pytest.mark.slow

NAME = "seed-ablation"
EPOCHS = 3
RUN = ("--seeds", "51,52,53", "--epochs", str(EPOCHS), "--precision", "fp32")
PACK = ("--pack", "2")


def analysed(experiment: Path, tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / f"{experiment.parent.name}.json"
    done = run_analysis(experiment, "--json", str(out))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(out.read_text())


COSTS = ("training_time_s", "s_per_epoch", "peak_memory_mb")  # of this run, not the model


def per_seed(result: dict[str, Any]) -> dict[tuple[str, int], dict[str, float]]:
    """Each (variant, seed)'s numbers but the run's costs."""
    return {
        (v["name"], t["seed"]): {k: x for k, x in t["metrics"].items() if k not in COSTS}
        for v in result["variants"]
        for t in v["trials"]
    }


def run(cmd: list[str], env: RayEnv) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env.env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def runs(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pack")
    env = RayEnv()
    try:
        out = {}
        for kind, extra in (("solo", ()), ("packed", PACK)):
            done = run(run_command(tiny_raw, root / kind, *RUN, *extra), env)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            out[kind] = analysed(root / kind / NAME, root)
            out[f"{kind}_experiment"] = root / kind / NAME
    finally:
        env.close()
    return out


def test_packed_seeds_are_seen_as_separate_trials_with_their_numbers(runs: dict) -> None:
    solo, packed = per_seed(runs["solo"]), per_seed(runs["packed"])
    assert sorted(packed) == sorted(solo) and len(packed) == 6  # 2 variants x 3 seeds
    for key, metrics in solo.items():
        for metric in ("val_loss", "val_accuracy", "val_roc_auc", "val_brier"):
            assert math.isclose(packed[key][metric], metrics[metric], rel_tol=1e-5, abs_tol=1e-9)
    assert runs["packed"]["verdict"] == runs["solo"]["verdict"]
    assert runs["packed"]["intervals_cover"] == "training seeds and validation scenes"
    # 2 variants x 2 packs ([51, 52], [53]): 4 trials, each seed's scores in its own record
    trials = histories(runs["packed_experiment"])
    assert len(trials) == 4
    records = sorted(runs["packed_experiment"].glob("*/checkpoint_*/seed-*/predictions.json"))
    assert {p.parent.name for p in records} == {"seed-51", "seed-52", "seed-53"}


def test_a_stopped_packed_run_resumes_to_the_same_results(
    runs: dict, tiny_raw: Path, tmp_path: Path
) -> None:
    env = RayEnv()
    experiment = tmp_path / NAME
    cmd = run_command(tiny_raw, tmp_path, *RUN, *PACK)
    try:
        proc = start(cmd, env, tmp_path / "first.log")
        try:
            wait_for(lambda: any(histories(experiment).values()), proc, "the first epoch")
            proc.send_signal(signal.SIGINT)
        finally:
            output = finish(proc, tmp_path / "first.log")
        assert proc.returncode == 130, output[-3000:]
        resumed = run(cmd, env)
    finally:
        env.close()
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming experiment" in resumed.stdout
    for rows in histories(experiment).values():  # every epoch reported once
        assert [row["epoch"] for row in rows] == list(range(1, EPOCHS + 1))
    again = per_seed(analysed(experiment, tmp_path))
    assert again == per_seed(runs["packed"])
