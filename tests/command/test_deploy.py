"""The cluster configs in deploy/, checked offline: Ray's own validation, and every command they
run parses with the real parser (`ray start`'s and `python -m tune_cilp.run`'s)."""

from __future__ import annotations

import copy
import shlex
from typing import Any

import pytest
import yaml
from helpers import ROOT

from tune_cilp.experiment.storage import is_uri
from tune_cilp.fusion.fusion_driver import param_space
from tune_cilp.run_args import build_parser, check_numbers, parse_seeds
from tune_cilp.spaces import DEFAULT_SPACE, get_space

DEPLOY = ROOT / "deploy"
RUN_COMMAND = ["python", "-m", "tune_cilp.run"]


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / name).read_text())


def ray_start(command: str) -> tuple[dict[str, str], list[str]] | None:
    """(environment assignments, arguments) of the `ray start` in a shell command line."""
    for part in command.split(";"):
        words = shlex.split(part)
        env = {}
        while words and "=" in words[0] and not words[0].startswith("-"):
            key, value = words.pop(0).split("=", 1)
            env[key] = value
        if words[:2] == ["ray", "start"]:
            return env, words[2:]
    return None


def parse_ray_start(args: list[str]) -> dict[str, Any]:
    """`ray start`'s own click parser, without starting anything; unknown options raise."""
    from ray.scripts.scripts import start

    return start.make_context("start", list(args)).params


def check_run_command(words: list[str]) -> Any:
    """Every check `python -m tune_cilp.run` makes before it loads data or starts Ray."""
    assert words[:3] == RUN_COMMAND, words
    args = build_parser().parse_args(words[3:])
    space = get_space(args.space or DEFAULT_SPACE)
    check_numbers(args)
    param_space(space, args.epochs or space.epochs, parse_seeds(args.seeds))
    return args


@pytest.fixture(scope="module")
def launcher() -> dict[str, Any]:
    return load("aws-cluster.yaml")


@pytest.fixture(scope="module")
def rayjob() -> dict[str, Any]:
    return load("kuberay-rayjob.yaml")


def test_launcher_config_passes_rays_validation(launcher: dict[str, Any]) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(launcher))
    validate_config(prepared)  # raises on a schema violation
    assert prepared["head_node_type"] in prepared["available_node_types"]
    gpu_types = [
        node
        for node in prepared["available_node_types"].values()
        if node.get("resources", {}).get("GPU", 0) > 0
    ]
    assert gpu_types and all(node["min_workers"] >= 1 for node in gpu_types)


def test_launcher_installs_the_project_on_every_node(launcher: dict[str, Any]) -> None:
    mounts = {remote for remote, local in launcher["file_mounts"].items() if local == "."}
    assert len(mounts) == 1  # the checkout `ray up` runs from
    (remote,) = mounts
    assert any(
        "pip install" in cmd and remote in shlex.split(cmd) for cmd in launcher["setup_commands"]
    ), launcher["setup_commands"]
    assert "**/.venv" in launcher["rsync_exclude"]
    import ray

    pinned = f'"ray[default,tune]=={ray.__version__}"'  # the Ray the tests ran with
    assert any(pinned in cmd for cmd in launcher["setup_commands"]), launcher["setup_commands"]


def test_launcher_starts_ray_with_the_dashboard_on_loopback(launcher: dict[str, Any]) -> None:
    head = [s for s in map(ray_start, launcher["head_start_ray_commands"]) if s is not None]
    assert len(head) == 1
    head_env, head_args = head[0]
    params = parse_ray_start(head_args)
    assert params["head"] and params["dashboard_host"] == "127.0.0.1"
    assert "--dashboard-host=127.0.0.1" in head_args
    workers = [s for s in map(ray_start, launcher["worker_start_ray_commands"]) if s is not None]
    assert len(workers) == 1
    worker_env, worker_args = workers[0]
    worker = parse_ray_start(worker_args)
    assert not worker["head"] and worker["address"] == f"$RAY_HEAD_IP:{params['port']}"
    # No node logs runtime envs (which carry credentials) at INFO.
    assert head_env["RAY_LOGGER_LEVEL"] == worker_env["RAY_LOGGER_LEVEL"] == "warning"


def test_rayjob_is_a_kuberay_rayjob(rayjob: dict[str, Any]) -> None:
    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    spec = rayjob["spec"]
    cluster = spec["rayClusterSpec"]
    import ray

    assert cluster["rayVersion"] == ray.__version__  # the image's Ray matches the tested one
    head = cluster["headGroupSpec"]
    groups = cluster["workerGroupSpecs"]
    assert groups and all(g["template"]["spec"]["containers"] for g in groups)
    assert any(
        "nvidia.com/gpu" in c["resources"]["limits"]
        for g in groups
        for c in g["template"]["spec"]["containers"]
    )
    # rayStartParams become `ray start --key=value` options: each must exist.
    for params in [head["rayStartParams"], *(g["rayStartParams"] for g in groups)]:
        parse_ray_start([f"--{key}={value}" for key, value in params.items()])
    # The dashboard stays inside the cluster network: no Ingress, no external head service.
    assert not head.get("enableIngress", False)
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    containers = [
        *head["template"]["spec"]["containers"],
        *(c for g in groups for c in g["template"]["spec"]["containers"]),
    ]
    for container in containers:
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        assert env.get("RAY_LOGGER_LEVEL") == "warning", container["name"]


def test_rayjob_entrypoint_is_accepted_by_the_runner(rayjob: dict[str, Any]) -> None:
    args = check_run_command(shlex.split(rayjob["spec"]["entrypoint"]))
    assert args.address == "auto"  # the entrypoint runs on the head pod
    assert is_uri(args.storage_path)  # every pod reaches object storage; a local path would not


def test_runner_argument_check_rejects_a_broken_entrypoint() -> None:
    # The check above can fail: a typo in the entrypoint is caught offline.
    from tune_cilp.core.errors import UserError

    with pytest.raises(UserError, match="--space: unknown space"):
        check_run_command([*RUN_COMMAND, "--space", "fusoin"])
    with pytest.raises(UserError, match="unrecognized arguments"):
        check_run_command([*RUN_COMMAND, "--stroage-path", "s3://b/x"])
