"""Experiments on object storage for real: a local S3 server (moto's server mode, its own
process) that Ray Tune, its trial workers, the tool and the analysis reach through the AWS_*
endpoint variables, as they would reach MinIO or S3. A fusion experiment on s3:// interrupted
and resumed by the same command, a second driver refused by the lease while the first runs,
`python -m analysis s3://...` printing what it prints for the same run on a local disk, and a
CILP chain (whose stages load their upstream checkpoints from the bucket) interrupted between
stages, resumed, and run to its table."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs
import pytest
from helpers import (
    ROOT,
    RUN_TIMEOUT_S,
    S3_BUCKET,
    RayEnv,
    error_lines,
    finish,
    run_command,
    s3_filesystem,
    s3_server,
    start,
    wait_for,
)

from tune_cilp.cilp.select import STAGE_FILE
from tune_cilp.cilp.stages import cilp_rows, get_stage, stage_names
from tune_cilp.experiment.identity import META_FILE
from tune_cilp.experiment.lock import LEASE_FILE

pytestmark = pytest.mark.slow  # real Ray runs, subprocesses and a server

EPOCHS = 4  # Tune stores rows on a URI every num_to_keep (2) checkpoints: room to stop mid-way
FUSION = "seed-ablation"  # the default space: two trials
# Two CPUs per trial on the 2-CPU Ray: the trials run one after the other, each with the same
# thread count in every run, so the interrupted run's numbers match the local run's.
FUSION_ARGS = ("--epochs", str(EPOCHS), "--cpus-per-trial", "2")


@dataclass
class Bucket:
    """The S3 server as the tests see it: runner environments pointed at it and a file system
    on it for reading what the runs stored (keys are `<bucket>/<path>`)."""

    ray_env: RayEnv
    fs: pyarrow.fs.S3FileSystem

    def objects(self, key: str) -> dict[str, int]:
        """Every object under `key` by its path below it and its size."""
        selector = pyarrow.fs.FileSelector(key, recursive=True, allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return {i.path[len(key) + 1 :]: i.size for i in infos if i.type == pyarrow.fs.FileType.File}

    def read(self, key: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(key) as f:
                return f.readall()
        except FileNotFoundError:
            return None

    def rows(self, key: str) -> dict[str, list[dict[str, Any]]]:
        """Trial directory -> the rows its stored result.json holds (tests/helpers.histories,
        on the bucket)."""
        out = {}
        for path in sorted(self.objects(key)):
            trial, _, name = path.partition("/")
            if name == "result.json":
                text = (self.read(f"{key}/{path}") or b"").decode()
                out[trial] = [json.loads(line) for line in text.splitlines() if line.strip()]
        return out


def uri(key: str) -> str:
    return f"s3://{key}"


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bucket]:
    with s3_server(tmp_path_factory.mktemp("s3") / "moto.log") as env:
        ray_env = RayEnv(**env)
        try:
            yield Bucket(ray_env, s3_filesystem(env))
        finally:
            ray_env.close()


def run(cmd: list[str], bucket: Bucket, timeout: float = RUN_TIMEOUT_S):
    return subprocess.run(
        cmd, cwd=ROOT, env=bucket.ray_env.env, capture_output=True, text=True, timeout=timeout
    )


def analyse(experiment: str, bucket: Bucket) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "analysis", experiment], bucket, timeout=120)


@pytest.fixture(scope="module")
def fusion(bucket: Bucket, tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A fusion experiment on the bucket: a second driver tried while the first runs, the first
    interrupted (Ctrl-C) once the bucket holds a row, the same command again; and the same
    command, uninterrupted, on a local disk."""
    tmp = tmp_path_factory.mktemp("fusion")
    key = f"{S3_BUCKET}/runs/{FUSION}"
    cmd = run_command(tiny_raw, uri(f"{S3_BUCKET}/runs"), *FUSION_ARGS)
    lease = f"{key}/{LEASE_FILE}"
    first = start(cmd, bucket.ray_env, tmp / "first.log")
    try:
        wait_for(lambda: bucket.read(lease), first, "the first driver's lease")
        second = run(cmd, bucket)
        first_ran_throughout = first.poll() is None
        wait_for(lambda: any(bucket.rows(key).values()), first, "a stored row")
        first.send_signal(signal.SIGINT)
    finally:
        first_output = finish(first, tmp / "first.log")
    partial = bucket.rows(key)
    lease_after = bucket.read(lease)
    resumed = run(cmd, bucket)
    local = run(run_command(tiny_raw, tmp / "local", *FUSION_ARGS), bucket)
    return {
        "key": key,
        "first": (first.returncode, first_output),
        "first_pid": first.pid,
        "second": second,
        "first_ran_throughout": first_ran_throughout,
        "partial": partial,
        "lease_after": lease_after,
        "resumed": resumed,
        "local": local,
        "local_experiment": tmp / "local" / FUSION,
    }


def test_an_interrupted_experiment_resumes_from_the_bucket_with_every_epoch_once(
    fusion: dict, bucket: Bucket
) -> None:
    code, output = fusion["first"]
    assert code == 130, output[-3000:]
    assert output.rstrip().endswith("interrupted: re-run the same command to resume")
    assert fusion["lease_after"] is None  # released on the way out: the resume need not wait
    partial = fusion["partial"]
    assert sum(map(len, partial.values())) < 2 * EPOCHS, "interrupted too late to tell"
    resumed = fusion["resumed"]
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming experiment" in resumed.stdout and error_lines(resumed.stderr) == []
    rows = bucket.rows(fusion["key"])
    assert len(rows) == 2
    for name, history in rows.items():
        assert [r["epoch"] for r in history] == list(range(1, EPOCHS + 1)), name
        done = partial.get(name, [])
        assert history[: len(done)] == done, name  # what was stored stays, not trained again
    meta = json.loads(bucket.read(f"{fusion['key']}/{META_FILE}") or b"{}")
    assert meta.get("finished_at"), meta


def test_a_second_driver_on_the_bucket_is_refused_in_one_line(fusion: dict) -> None:
    second = fusion["second"]
    assert fusion["first_ran_throughout"], "the first driver ended before the second was refused"
    assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
    (line,) = error_lines(second.stderr)
    experiment = uri(fusion["key"])
    holder = f"another driver is running this experiment (pid {fusion['first_pid']} on "
    assert line.startswith(f"error: {experiment}: {holder}"), line
    assert "Traceback" not in second.stderr and "starting experiment" not in second.stdout


def without_timings(text: str) -> list[str]:
    """A printed table's lines, the training time row left out (timings differ between runs)."""
    return [line for line in text.splitlines() if not line.startswith("| Training Time (s)")]


def test_analysis_of_the_bucket_prints_what_the_local_run_prints(
    fusion: dict, bucket: Bucket
) -> None:
    assert fusion["local"].returncode == 0, fusion["local"].stderr[-3000:]
    remote = analyse(uri(fusion["key"]), bucket)
    assert remote.returncode == 0, remote.stderr[-3000:]
    assert "Validation Loss" in remote.stdout and "concat-stride" in remote.stdout
    local = analyse(str(fusion["local_experiment"]), bucket)
    assert local.returncode == 0, local.stderr[-3000:]
    assert len(without_timings(remote.stdout)) < len(remote.stdout.splitlines())  # a row went
    assert without_timings(remote.stdout) == without_timings(local.stdout)


@pytest.fixture(scope="module")
def chain(bucket: Bucket, tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A CILP chain on the bucket, interrupted (Ctrl-C) in its second stage, then the same
    command again."""
    tmp = tmp_path_factory.mktemp("chain")
    key = f"{S3_BUCKET}/runs/cilp"
    cmd = run_command(tiny_raw, uri(f"{S3_BUCKET}/runs"), "--space", "cilp", "--epochs", "1")
    first_stage, second_stage = (f"{key}/{name}" for name in stage_names()[:2])

    def second_stage_saved() -> bool:
        # Its Tune state, not only its tuner.pkl (written when the Tuner is made, before the
        # state): the stop then comes while the stage runs, not between two stages.
        return any(name.startswith("experiment_state-") for name in bucket.objects(second_stage))

    first = start(cmd, bucket.ray_env, tmp / "first.log")
    try:
        wait_for(second_stage_saved, first, "the second stage's state")
        first.send_signal(signal.SIGINT)
    finally:
        first_output = finish(first, tmp / "first.log")
    stored = bucket.objects(first_stage)
    resumed = run(cmd, bucket)
    return {
        "key": key,
        "first": (first.returncode, first_output),
        "first_stage": (first_stage, stored),
        "resumed": resumed,
    }


def test_a_cilp_chain_on_the_bucket_resumes_and_runs_to_its_table(
    chain: dict, bucket: Bucket
) -> None:
    code, output = chain["first"]
    assert code == 130, output[-3000:]
    resumed = chain["resumed"]
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    first_stage, stored = chain["first_stage"]
    assert f"stage {stage_names()[0]}" not in resumed.stdout  # finished: not run again
    assert f"resuming stage {stage_names()[1]}" in resumed.stdout
    assert bucket.objects(first_stage) == stored
    for label in [m.label for m in cilp_rows()]:
        assert label in resumed.stdout, label
    assert "rgb-maxpool" in resumed.stdout  # the reference row (the baselines stage)
    assert f"experiment: {uri(chain['key'])}" in resumed.stdout


def test_each_stage_loaded_its_upstream_checkpoint_by_a_path_relative_to_the_chain(
    chain: dict, bucket: Bucket
) -> None:
    key = chain["key"]
    for name in stage_names():
        stage = get_stage(name)
        record = json.loads(bucket.read(f"{key}/{name}/{STAGE_FILE}") or b"{}")
        (link,) = record["links"]  # one seed
        assert link["checkpoint"].startswith(f"{name}/") and "://" not in link["checkpoint"]
        assert bucket.read(f"{key}/{link['checkpoint']}"), link  # the object it names
        if stage.upstream is None:
            continue
        upstream = json.loads(bucket.read(f"{key}/{stage.upstream.name}/{STAGE_FILE}") or b"{}")
        for history in bucket.rows(f"{key}/{name}").values():
            config = history[0]["config"]
            assert config[stage.upstream_key] == upstream["links"][0]["checkpoint"]


def test_analysis_of_the_chain_on_the_bucket_prints_its_table(chain: dict, bucket: Bucket) -> None:
    resumed = chain["resumed"]
    table = analyse(uri(chain["key"]), bucket)
    assert table.returncode == 0, table.stderr[-3000:]
    assert table.stdout.strip() and table.stdout.strip() in resumed.stdout
