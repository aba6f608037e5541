"""--race with real Ray on tiny data: the race runs to its end, and a race stopped mid-way (Ctrl-C,
or the driver killed) continues where it stood when the same command runs again: no (variant,
seed) trained twice, and the final race equal to an uninterrupted one's."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import RayEnv, finish, run_analysis, run_command, start, wait_for

from tune_cilp.experiment.identity import META_FILE

pytestmark = pytest.mark.slow

NAME = "seed-ablation"
EPOCHS = 2
RACE = ("--space", NAME, "--race", "--max-seeds", "4", "--epochs", str(EPOCHS))
TRIAL_DIR = re.compile(r"^[0-9a-f]+_(?P<variant>.+)_seed=(?P<seed>\d+)$")


def race(experiment: Path, tmp_path: Path) -> dict[str, Any]:
    """The analysis's JSON of the race."""
    out = tmp_path / "analysis.json"
    done = run_analysis(experiment, "--json", str(out))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(out.read_text())["race"]


def trials(experiment: Path) -> list[tuple[str, int]]:
    """(variant, seed) of every trial folder, in name order."""
    found = [TRIAL_DIR.match(p.name) for p in experiment.iterdir() if p.is_dir()]
    return sorted((m["variant"], int(m["seed"])) for m in found if m)


def finished_trials(experiment: Path) -> int:
    """Trials whose last epoch's checkpoint is stored."""
    return len(list(experiment.glob(f"*/checkpoint_{EPOCHS - 1:06d}/predictions.json")))


@pytest.fixture(scope="module")
def uninterrupted(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("race")
    env = RayEnv()
    try:
        run = subprocess.run(
            run_command(tiny_raw, root, *RACE), env=env.env, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
    finally:
        env.close()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {"experiment": root / NAME, "stdout": run.stdout, "race": race(root / NAME, root)}


def test_the_race_runs_its_looks_and_says_its_answer(uninterrupted: dict[str, Any]) -> None:
    result, out = uninterrupted["race"], uninterrupted["stdout"]
    assert result["design"]["variants"] == ["concat-maxpool", "concat-stride"]
    assert result["outcome"] in ("one left", "equivalent", "max seeds")
    looks = result["looks"]
    assert [look["seeds"] for look in looks] == list(range(3, 3 + len(looks)))
    assert looks[-1]["outcome"] == result["outcome"]
    # Seeds 51, 52, ... for each variant, as many as its last look used, each trained once.
    used = result["seeds_used"]
    expected = sorted((v, 51 + i) for v, n in used.items() for i in range(n))
    assert trials(uninterrupted["experiment"]) == expected
    assert result["trials_used"] == sum(used.values()) <= result["fixed_design_trials"] == 8
    for look in looks:  # printed as the race went
        assert f"race look {look['look']} ({look['seeds']} seeds each)" in out
    assert "The race, look by look" in out and "Race: " in out
    meta = json.loads((uninterrupted["experiment"] / META_FILE).read_text())
    assert meta["race"]["max_seeds"] == 4 and meta["finished_at"]


@pytest.mark.parametrize("how", ["sigint", "sigkill"])
def test_a_stopped_race_continues_where_it_stood(
    how: str, uninterrupted: dict[str, Any], tiny_raw: Path, tmp_path: Path
) -> None:
    env = RayEnv()
    experiment = tmp_path / NAME
    cmd = run_command(tiny_raw, tmp_path, *RACE)
    try:
        proc = start(cmd, env, tmp_path / "first.log")
        try:
            wait_for(lambda: finished_trials(experiment) >= 3, proc, "three finished trials")
            proc.send_signal(signal.SIGINT if how == "sigint" else signal.SIGKILL)
        finally:
            output = finish(proc, tmp_path / "first.log")
        assert proc.returncode == (130 if how == "sigint" else -signal.SIGKILL), output[-3000:]
        stopped_at = trials(experiment)
        assert len(stopped_at) < len(trials(uninterrupted["experiment"])), "stopped too late"

        resumed = subprocess.run(cmd, env=env.env, capture_output=True, text=True, timeout=600)
    finally:
        env.close()
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming experiment" in resumed.stdout
    done = trials(experiment)
    assert len(done) == len(set(done)) and set(stopped_at) <= set(done)  # none trained twice
    assert done == trials(uninterrupted["experiment"])
    assert race(experiment, tmp_path) == uninterrupted["race"]  # every decision the same
