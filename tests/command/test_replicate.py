"""Search -> replicate: `--replicate` re-runs a finished search's best configurations across
seeds as a new experiment (real Ray, tiny data), and refuses what it cannot replicate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import ray
from helpers import ROOT, RayEnv, execute_notebook, histories, run_command
from ray import tune

from analysis import experiment_table, load_experiment, trial_results
from tune_cilp.experiment.identity import META_FILE

pytestmark = pytest.mark.slow

SEEDS = (1, 2)
TOP_K = 3


def run(cmd: list[str], env: RayEnv) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=env.env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def replicated(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory, ray_env: RayEnv) -> dict:
    storage = tmp_path_factory.mktemp("replicate")
    search = run(
        run_command(tiny_raw, storage, "--space", "hpo", "--epochs", "2", "--num-samples", "6"),
        ray_env,
    )
    assert search.returncode == 0, search.stdout[-2000:] + search.stderr[-2000:]
    source = storage / "hpo"
    seeds = ",".join(map(str, SEEDS))
    cmd = [*run_command(tiny_raw, storage, "--replicate", str(source), "--seeds", seeds)]
    proc = run([*cmd, "--top-k", str(TOP_K)], ray_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"source": source, "experiment": storage / "hpo-replicate", "proc": proc, "cmd": cmd}


def test_replicate_runs_the_top_configurations_once_per_seed(replicated: dict) -> None:
    source = trial_results(load_experiment(replicated["source"]))
    finished = sorted(
        (r for r in source if r.status == "TERMINATED"), key=lambda r: r.metrics["val_loss"]
    )
    expected = []
    for r in finished:
        config = {k: v for k, v in r.config.items() if k != "seed"}
        if config not in expected:
            expected.append(config)
    expected = expected[:TOP_K]

    runs = histories(replicated["experiment"])
    assert len(runs) == TOP_K * len(SEEDS)
    got: dict[str, list[int]] = {}
    for rows in runs.values():
        config = dict(rows[0]["config"])
        seed = config.pop("seed")
        assert config in expected, config
        got.setdefault(json.dumps(config, sort_keys=True), []).append(seed)
        assert [row["epoch"] for row in rows] == [1, 2]
    assert sorted(map(sorted, got.values())) == [list(SEEDS)] * TOP_K

    meta = json.loads((replicated["experiment"] / META_FILE).read_text())
    assert meta["replicate"] == str(replicated["source"]) and meta["top_k"] == TOP_K
    assert meta["space"] == "replicate" and meta["seeds"] == list(SEEDS)
    out = replicated["proc"].stdout
    assert "Rank" in out and "Verdict: lowest val_loss" in out  # the many-variant table
    table = experiment_table(load_experiment(replicated["experiment"]))
    assert table.ranking is not None and len(table.ranking.rows) == TOP_K


def test_replicate_rerun_resumes_like_any_experiment(replicated: dict, ray_env: RayEnv) -> None:
    again = run([*replicated["cmd"], "--top-k", str(TOP_K)], ray_env)
    assert again.returncode == 0 and "is finished" in again.stdout
    other = run([*replicated["cmd"], "--top-k", "2"], ray_env)
    assert (
        other.returncode == 2 and "--top-k: this experiment was made with 3, not 2" in other.stderr
    )


def test_notebook_shows_the_ranking_for_many_variants(replicated: dict) -> None:
    text, images = execute_notebook(replicated["experiment"])
    assert "| Rank" in text and "Verdict: lowest val_loss" in text
    assert images == 6  # curves, final metrics, ranking, paired differences, wrong scenes,
    # reliability


def _not_fusion(tmp_path: Path) -> Path:
    """A real Tune experiment whose trials have no variant / downsample in their config."""
    ray.init(num_cpus=1, include_dashboard=False)
    try:
        tune.Tuner(
            lambda config: tune.report({"val_loss": config["x"]}),
            param_space={"x": tune.grid_search([1.0, 2.0])},
            run_config=tune.RunConfig(name="other", storage_path=str(tmp_path)),
        ).fit()
    finally:
        ray.shutdown()
    return tmp_path / "other"


def test_replicate_refuses_what_it_cannot_replicate(
    tiny_raw: Path, tmp_path: Path, ray_env: RayEnv, restore_env: None
) -> None:
    other = _not_fusion(tmp_path)
    faulty = [sys.executable, str(ROOT / "tests" / "faulty_run.py")]
    args = [*run_command(tiny_raw, tmp_path)[3:], "--epochs", "1", "--seeds", "52"]
    failing = run([*faulty, *args, "--name", "failed"], ray_env)
    assert failing.returncode == 1, failing.stderr[-2000:]
    cases = [
        (str(tiny_raw), "not a Ray Tune experiment"),
        (str(tmp_path / "failed"), "no finished trial to replicate"),
        (str(other), "its trial configs have no variant, downsample"),
    ]
    for source, message in cases:
        proc = run(
            [*run_command(tiny_raw, tmp_path, "--replicate", source, "--seeds", "1,2")], ray_env
        )
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr[-1500:]
    one_seed = run(
        run_command(tiny_raw, tmp_path, "--replicate", str(other), "--seeds", "1"), ray_env
    )
    assert one_seed.returncode == 2 and "needs --seeds with at least two seeds" in one_seed.stderr
