"""Command-line arguments of ``python -m tune_cilp.run`` and every check that needs no Ray."""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
from pathlib import Path

from tune_cilp.core.errors import ArgumentParser, UserError
from tune_cilp.training.config import MAX_EPOCHS

DEFAULT_STORAGE = "~/ray_results"
DEFAULT_GCS_PORT = 6379
CONNECT_TIMEOUT_S = 3.0


def build_parser() -> ArgumentParser:
    """The argument parser (bad arguments raise UserError)."""
    p = ArgumentParser(
        prog="python -m tune_cilp.run",
        description="Run a named Ray Tune experiment over RGB + LiDAR fusion variants.",
    )
    p.add_argument("--space", default=None, help="search space name (default: seed-ablation)")
    p.add_argument("--list-spaces", action="store_true", help="list the search spaces and exit")
    p.add_argument("--epochs", type=int, default=None, help="epochs per trial (space default)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 51,52,53")
    p.add_argument("--num-samples", type=int, default=None, help="Tune num_samples")
    p.add_argument(
        "--dataset",
        default=None,
        help="a raw or FiftyOne export directory, a FiftyOne dataset name, or a built-in set: "
        "synthetic:seed (the default: the seed's 999 cubes / 75 spheres) or synthetic:balanced",
    )
    p.add_argument("--data-dir", default=None, help="cache directory of the default data")
    p.add_argument("--storage-path", default=DEFAULT_STORAGE, help="local path or URI (s3://..)")
    p.add_argument("--name", default=None, help="experiment name (default: the space name)")
    p.add_argument("--address", default=None, help="existing Ray cluster (host:port or auto)")
    p.add_argument("--gpus-per-trial", type=float, default=None, help="GPU fraction per trial")
    p.add_argument(
        "--cpus-per-trial",
        type=float,
        default=None,
        help="CPU cores (threads) per trial (default: without GPUs the CPU plan picks what "
        "finishes the experiment soonest; with GPUs 1)",
    )
    p.add_argument("--max-failures", type=int, default=0, help="retries of a crashed trial")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default=None,
        help="training precision (default: the space's; auto = bf16 where the hardware has it)",
    )
    p.add_argument(
        "--lidar-cnn", default=None, help="CILP: NVIDIA's LiDAR CNN state dict (.pt) to map onto"
    )
    p.add_argument("--wandb", choices=["offline", "online", "disabled"], default="offline")
    p.add_argument("--smoke-test", action="store_true", help="a few samples, one epoch")
    p.add_argument(
        "--tensorboard", action="store_true", help="also write TensorBoard event files per trial"
    )
    p.add_argument(
        "--replicate",
        metavar="EXPERIMENT",
        default=None,
        help="re-run EXPERIMENT's best configuration of each variant x downsampling (or the "
        "--top-k best) once per --seeds seed, as a new experiment",
    )
    p.add_argument("--top-k", type=int, default=None, help="with --replicate: the k best overall")
    return p


def parse_seeds(text: str | None) -> list[int] | None:
    """``"51,52"`` -> [51, 52]; None stays None."""
    if text is None:
        return None
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds: expected distinct comma-separated integers, got {text!r}")
    return seeds  # their range is TrainConfig's to check (check_param_space)


def check_numbers(args: argparse.Namespace) -> None:
    """Range checks on the numeric arguments."""
    if args.epochs is not None and not 1 <= args.epochs <= MAX_EPOCHS:
        raise UserError(f"--epochs: must be between 1 and {MAX_EPOCHS:,}, got {args.epochs}")
    if args.top_k is not None and args.top_k < 1:
        raise UserError(f"--top-k: must be at least 1, got {args.top_k}")
    if args.num_samples is not None and args.num_samples < 1:
        raise UserError(f"--num-samples: must be at least 1, got {args.num_samples}")
    if args.gpus_per_trial is not None and not 0.0 <= args.gpus_per_trial <= 1.0:
        raise UserError(
            f"--gpus-per-trial: must be a fraction in [0, 1], got {args.gpus_per_trial}"
        )
    if args.cpus_per_trial is not None and args.cpus_per_trial <= 0:
        raise UserError(f"--cpus-per-trial: must be positive, got {args.cpus_per_trial}")
    if args.max_failures < -1:
        raise UserError(f"--max-failures: must be -1 (forever) or more, got {args.max_failures}")
    if args.name is not None and (not args.name or "/" in args.name or args.name in (".", "..")):
        raise UserError(f"--name: must be a plain directory name, got {args.name!r}")


def check_address(address: str | None) -> None:
    """Fail fast on an unreachable cluster: ray.init would retry for minutes."""
    if address is None or address == "auto":
        return  # auto: ray.init itself fails at once when no local cluster is running
    host_port = address.removeprefix("ray://")
    host, _, port_text = host_port.rpartition(":")
    if not host:
        host, port_text = host_port, str(DEFAULT_GCS_PORT)
    try:
        port = int(port_text)
    except ValueError:
        raise UserError(f"--address: expected host:port or auto, got {address!r}") from None
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UserError(f"--address: cannot reach a Ray cluster at {address} ({exc})") from None


# Storage URI schemes Ray Tune can write to (through pyarrow); file:// is handled as local.
URI_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def is_uri(storage_path: str) -> bool:
    """True for a remote storage URI; checks its scheme (a local path or file:// is not one)."""
    scheme, sep, rest = storage_path.partition(":")
    if not sep or "/" in scheme or scheme == "file":
        return False
    if not rest.startswith("//") or not rest[2:].strip("/"):
        raise UserError(f"--storage-path: malformed URI {storage_path!r} (expected scheme://path)")
    if scheme not in URI_SCHEMES:
        raise UserError(
            f"--storage-path: unsupported URI scheme {scheme!r} (use {', '.join(URI_SCHEMES)}, "
            "or a local or NFS path)"
        )
    return True


def local_storage(storage_path: str) -> Path:
    """A local storage path (or file:// URI), absolute, created and checked writable."""
    path = Path(os.path.expanduser(storage_path.removeprefix("file://"))).resolve()
    # os.path, not Path: it answers False instead of raising where a parent is unreadable
    existing = next(p for p in (path, *path.parents) if os.path.exists(p))  # "/" exists
    if not os.path.isdir(existing):
        under = "" if existing == path else f" (so {path} cannot be created)"
        raise UserError(f"--storage-path: {existing} is a file, not a directory{under}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_test_"):
            pass
    except OSError as exc:
        raise UserError(f"--storage-path: {path} is not writable ({exc.strerror})") from None
    return path
