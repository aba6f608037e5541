"""Every option means the same for every space, or is refused in one line by the one check
(tune_cilp.run.check_applies) — for every space the registry knows, so a new space module is
covered without editing this file."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import ROOT, error_lines

from tune_cilp.cilp.cilp_space import CilpSpace
from tune_cilp.core.errors import UserError
from tune_cilp.experiment.run_settings import SMOKE_MAX_SAMPLES, num_samples
from tune_cilp.fusion.fusion_driver import run_params, variant_configs
from tune_cilp.run import check_applies, race_plan
from tune_cilp.run_args import build_parser, parse_request
from tune_cilp.spaces import get_space, list_spaces

SPACES = list_spaces()
CILP = [s for s in SPACES if isinstance(s, CilpSpace)]
FUSION = [s for s in SPACES if not isinstance(s, CilpSpace)]


def request(*words: str):
    argv = list(words)
    return parse_request(build_parser().parse_args(argv), argv, 0.0)


def test_the_registry_has_both_kinds() -> None:
    assert CILP and FUSION  # otherwise the tests below check nothing of one kind


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.name)
def test_top_k_without_replicate_is_refused_for_every_space(space) -> None:
    with pytest.raises(UserError, match="^--top-k: only with --replicate$"):
        request("--space", space.name, "--top-k", "2")


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.name)
def test_uri_storage_applies_to_every_space(space) -> None:
    # CILP chains too: tests/experiment/test_object_store.py runs one on a local S3 server.
    uri = request("--space", space.name, "--storage-path", "s3://bucket/results")
    assert not uri.local and uri.experiment == f"s3://bucket/results/{space.name}"
    check_applies(uri, space)


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.name)
def test_lidar_cnn_applies_to_cilp_and_is_refused_for_fusion(space, tmp_path: Path) -> None:
    given = request("--space", space.name, "--lidar-cnn", str(tmp_path / "lidar_cnn.pt"))
    assert given.lidar_cnn == str(tmp_path / "lidar_cnn.pt")
    if isinstance(space, CilpSpace):
        check_applies(given, space)
    else:
        with pytest.raises(UserError, match="^--lidar-cnn: only for CILP spaces"):
            check_applies(given, space)


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.name)
def test_test_fraction_applies_to_fusion_and_is_refused_for_cilp(space) -> None:
    given = request("--space", space.name, "--test-fraction", "0.2")
    assert given.test_fraction == 0.2 and request("--space", space.name).test_fraction is None
    if isinstance(space, CilpSpace):
        with pytest.raises(UserError, match="^--test-fraction: only for fusion spaces"):
            check_applies(given, space)
    else:
        check_applies(given, space)


def test_test_fraction_goes_with_replicate(tmp_path: Path) -> None:
    given = request("--replicate", str(tmp_path), "--seeds", "1,2", "--test-fraction", "0.5")
    assert given.test_fraction == 0.5 and given.replicate == str(tmp_path)


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.name)
def test_smoke_test_caps_samples_and_num_samples_overrides_alike(space) -> None:
    smoke = request("--space", space.name, "--smoke-test")
    assert num_samples(smoke, space.num_samples) == min(space.num_samples, SMOKE_MAX_SAMPLES)
    assert num_samples(smoke, 10) == SMOKE_MAX_SAMPLES
    assert num_samples(request("--space", space.name, "--num-samples", "3"), 10) == 3
    assert num_samples(request("--space", space.name), 10) == 10


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.name)
def test_race_applies_to_grid_fusion_spaces_and_is_refused_for_the_rest(space) -> None:
    given = request("--space", space.name, "--race", "--max-seeds", "5", "--alpha", "0.1")
    assert given.race and given.max_seeds == 5 and given.alpha == 0.1 and given.margin is None
    if isinstance(space, CilpSpace):
        with pytest.raises(UserError, match="^--race: not for CILP spaces"):
            check_applies(given, space)
    elif space.samples:
        with pytest.raises(UserError, match=f"^--race: space '{space.name}' samples"):
            check_applies(given, space)
    else:
        check_applies(given, space)
        plan = race_plan(given, space)
        names = list(plan.configs)
        assert len(names) >= 2 and plan.record["max_seeds"] == 5 and plan.record["alpha"] == 0.1
        assert plan.record["metric"] == space.metric and plan.first_trials == 3
        # The race's variants are the space's grid: the same trials a --seeds run makes
        params = run_params(request("--space", space.name), space)
        assert len(names) == len(variant_configs(params))


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--race", "--seeds", "51,52"], "--race and --seeds: the race chooses the seeds"),
        (["--race", "--num-samples", "3"], "--race and --num-samples"),
        (["--max-seeds", "5"], "--max-seeds: only with --race"),
        (["--alpha", "0.1"], "--alpha: only with --race"),
        (["--margin", "0.1"], "--margin: only with --race"),
    ],
)
def test_race_options_refused_while_parsing(words: list[str], message: str) -> None:
    with pytest.raises(UserError, match=f"^{message}"):
        request("--space", FUSION[0].name, *words)


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--pack", "1", "--seeds", "51,52"], "--pack: must be at least 2 seeds per trial"),
        (["--pack", "2"], "--pack: needs --seeds with 2 or more seeds"),
        (["--pack", "2", "--seeds", "51"], "--pack: needs --seeds with 2 or more seeds"),
        (["--pack", "2", "--race"], "--pack and --race"),
    ],
)
def test_pack_options_refused_while_parsing(words: list[str], message: str) -> None:
    with pytest.raises(UserError, match=f"^{message}"):
        request("--space", FUSION[0].name, *words)


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.name)
def test_pack_applies_to_fusion_grid_spaces_and_is_refused_for_the_rest(space) -> None:
    given = request("--space", space.name, "--seeds", "51,52,53", "--pack", "2")
    if isinstance(space, CilpSpace):
        with pytest.raises(UserError, match="^--pack: only for fusion spaces"):
            check_applies(given, space)
    elif not space.grid_seeds:  # a sampling space takes no --seeds, packed or not
        with pytest.raises(UserError, match="^--seeds: space .* samples its configurations"):
            run_params(given, space)
    else:
        check_applies(given, space)
        params = run_params(given, space)
        assert "seed" not in params and params["packed_seeds"] == {"grid_search": [[51, 52], [53]]}
        assert len(variant_configs(params)) == 2 * len(variant_configs(run_params(
            request("--space", space.name), space)))  # fmt: skip


def test_race_with_replicate_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="^--race and --replicate"):
        request("--replicate", str(tmp_path), "--seeds", "1,2", "--race")
    with pytest.raises(UserError, match="^--pack and --replicate"):
        request("--replicate", str(tmp_path), "--seeds", "1,2", "--pack", "2")


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--max-seeds", "2"], "--max-seeds 2 is below the 3 seeds each variant starts with"),
        (["--alpha", "1.5"], "--alpha 1.5 is not in (0, 1)"),
        (["--alpha", "0"], "--alpha 0 is not in (0, 1)"),
        (["--margin", "-0.1"], "--margin -0.1 is not a positive number"),
    ],
)
def test_bad_race_settings_are_refused(words: list[str], message: str) -> None:
    space = get_space("seed-ablation")
    with pytest.raises(UserError, match=f"^{re.escape(message)}"):
        race_plan(request("--space", space.name, "--race", *words), space)


def test_a_space_with_one_variant_cannot_race() -> None:
    space = replace(get_space("seed-ablation"), name="one", param_space={"variant": "concat"})
    with pytest.raises(UserError, match="^--race compares variants: the space has 1"):
        race_plan(request("--space", "seed-ablation", "--race"), space)


def test_the_request_is_frozen_and_absolute(tmp_path: Path) -> None:
    got = request("--storage-path", str(tmp_path / "a" / ".." / "b"), "--seeds", "1,2")
    assert got.location.parent == str(tmp_path / "b") and got.seeds == (1, 2) and got.local
    assert not (tmp_path / "b").exists()  # parsing writes nothing: the driver creates it
    with pytest.raises(AttributeError):
        got.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--space", CILP[0].name, "--top-k", "2"], "error: --top-k: only with --replicate"),
        (["--space", FUSION[0].name, "--lidar-cnn", "x.pt"], "error: --lidar-cnn: only for CILP"),
        (
            ["--space", CILP[0].name, "--test-fraction", "0.5"],
            "error: --test-fraction: only for fusion spaces",
        ),
        (["--space", CILP[0].name, "--race"], "error: --race: not for CILP spaces"),
        (["--space", "hpo", "--race"], "error: --race: space 'hpo' samples"),
        (["--space", "fusion", "--race", "--seeds", "1,2"], "error: --race and --seeds"),
        (["--space", "fusion", "--race", "--max-seeds", "1"], "error: --max-seeds 1 is below"),
    ],
)
def test_the_command_refuses_in_one_line(words: list[str], message: str, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "tune_cilp.run", *words]
    if "--storage-path" not in words:
        cmd += ["--storage-path", str(tmp_path / "results")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert line.startswith(message), line
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "results").exists()
