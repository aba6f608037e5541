"""Command-line arguments of ``python -m tune_cilp.run``, every check that needs no Ray, and the
one validated, frozen RunRequest the drivers below the command receive."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from tune_cilp.core.errors import EXIT_CODES as CLI_EXIT_CODES
from tune_cilp.core.errors import ArgumentParser, UserError, epilog
from tune_cilp.data import DATASET_FLAGS, DEFAULT_SOURCE, check_test_fraction
from tune_cilp.data.default_set import DATA_DIR
from tune_cilp.experiment.driver import DEFAULT_GPU_FRACTION
from tune_cilp.experiment.race_search import ALPHA, MAX_SEEDS
from tune_cilp.experiment.request import RunRequest
from tune_cilp.experiment.storage import Location, is_uri
from tune_cilp.experiment.wandb_setup import MODES, PROJECT, resolve_wandb
from tune_cilp.replicate import SPACE_NAME as REPLICATE_SPACE
from tune_cilp.spaces import DEFAULT_SPACE
from tune_cilp.training.trial_config import MAX_EPOCHS

DEFAULT_STORAGE = "~/ray_results"


ENVIRONMENT = {
    "RAY_ADDRESS": "the Ray cluster to join when --address is not given",
    "TUNE_CILP_DATA_DIR": "cache of the built-in data sets (--data-dir)",
    "WANDB_MODE": "W&B mode when --wandb is not given",
    "WANDB_PROJECT": "W&B project when --wandb-project is not given",
    "WANDB_ENTITY": "W&B entity when --wandb-entity is not given",
    "WANDB_DIR": "W&B folder when --wandb-dir is not given",
    "WANDB_API_KEY": "W&B key for online runs (or `wandb login`); dropped offline",
    "FIFTYONE_DATABASE_DIR": "FiftyOne's database, for a FiftyOne --dataset",
}
EXIT_CODES = {**CLI_EXIT_CODES, 1: "a trial failed, or the storage did (one `error:` line)"}


def build_parser() -> ArgumentParser:
    """The argument parser (bad arguments raise UserError)."""
    p = ArgumentParser(
        prog="python -m tune_cilp.run",
        description="Run a named Ray Tune experiment over RGB + LiDAR fusion variants (or a "
        "CILP chain); re-run the same command to resume it.",
        epilog=epilog(EXIT_CODES, ENVIRONMENT),
    )
    p.add_argument("--space", default=None, help=f"search space name (default: {DEFAULT_SPACE})")
    p.add_argument("--list-spaces", action="store_true", help="list the search spaces and exit")
    p.add_argument(
        "--epochs", type=int, default=None, help="epochs per trial (default: the space's)"
    )
    p.add_argument(
        "--seeds", default=None, help="comma-separated seeds, e.g. 51,52,53 (default: the space's)"
    )
    p.add_argument(
        "--num-samples",
        type=int,
        default=None,
        help="Tune num_samples, for a space that samples (default: the space's)",
    )
    p.add_argument(
        *DATASET_FLAGS,
        dest="dataset",
        default=None,
        help="a raw or FiftyOne export directory, a FiftyOne dataset name, or a built-in set: "
        f"synthetic:seed (the seed's 999 cubes / 75 spheres) or synthetic:balanced "
        f"(default: {DEFAULT_SOURCE})",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=None,
        metavar="F",
        help="hold out a seeded share F (0 < F < 1) of each class's validation scenes as a test "
        "split: the best epoch and configuration are chosen on the rest of validation, and the "
        "test split's scores are recorded at that epoch (fusion spaces and --replicate; "
        "default: none, the seed's train / validation split)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help=f"cache of the built-in data sets (default: $TUNE_CILP_DATA_DIR, else {DATA_DIR})",
    )
    p.add_argument(
        "--storage-path",
        default=DEFAULT_STORAGE,
        help="local path, NFS or URI (s3://, gs://); the experiment is <storage-path>/<name> "
        f"(default: {DEFAULT_STORAGE}, so {DEFAULT_STORAGE}/<space>)",
    )
    p.add_argument("--name", default=None, help="experiment name (default: the space's name)")
    p.add_argument(
        "--address",
        default=None,
        help="an existing Ray cluster, host:port or auto (default: $RAY_ADDRESS, else a Ray "
        "started on this machine)",
    )
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        help=f"GPU fraction per trial (default: {DEFAULT_GPU_FRACTION} where the cluster has "
        "GPUs, else 0)",
    )
    p.add_argument(
        "--cpus-per-trial",
        type=int,
        default=None,
        help="CPU cores per trial, each a torch thread (default: without GPUs the CPU plan picks "
        "what finishes the experiment soonest; with GPUs 1)",
    )
    p.add_argument(
        "--max-failures",
        type=int,
        default=0,
        help="retries of a crashed trial from its last checkpoint; -1: without limit",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="checkpoint each trial every N epochs and at its last; a resume re-trains the "
        "epochs after the last checkpoint, each reported once (a trial retried within the run, "
        "--max-failures, reports them again) (default: every epoch)",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default=None,
        help="training precision (default: the space's; auto = bf16 where the hardware has it)",
    )
    p.add_argument(
        "--lidar-cnn",
        default=None,
        help="CILP: NVIDIA's LiDAR CNN state dict (.pt) to map onto (default: none; the "
        "LiDAR side trains from scratch)",
    )
    p.add_argument(
        "--wandb",
        choices=MODES,
        default=None,
        help="one W&B run per trial: offline, online (needs a key: WANDB_API_KEY or `wandb "
        "login`; offline without one) or disabled (default: $WANDB_MODE, else offline)",
    )
    p.add_argument("--wandb-project", default=None, help=f"default: $WANDB_PROJECT, else {PROJECT}")
    p.add_argument(
        "--wandb-entity", default=None, help="default: $WANDB_ENTITY, else the key's own"
    )
    p.add_argument(
        "--wandb-dir",
        default=None,
        help="where W&B writes (<dir>/wandb/; default: $WANDB_DIR, else the experiment "
        "directory, or each trial's working directory on URI storage)",
    )
    p.add_argument("--smoke-test", action="store_true", help="a few samples, one epoch")
    p.add_argument(
        "--tensorboard", action="store_true", help="also write TensorBoard event files per trial"
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="print Ray's full status table every 10 s instead of one line per trial",
    )
    p.add_argument(
        "--replicate",
        metavar="EXPERIMENT",
        default=None,
        help="re-run EXPERIMENT's best configuration of each variant x downsampling (or the "
        "--top-k best) once per --seeds seed, as a new experiment <source>-replicate",
    )
    p.add_argument(
        "--top-k", type=int, default=None, help="with --replicate: the k best configurations"
    )
    p.add_argument(
        "--pack",
        type=int,
        default=None,
        metavar="K",
        help="train K seeds of a configuration together in one trial (one process, one data "
        "copy, one shared step; each seed's numbers its solo trial's within 1e-5) (default: "
        "one seed per trial)",
    )
    p.add_argument(
        "--race",
        action="store_true",
        help="race seeds: every variant starts with 3 seeds, the variants shown worse are "
        "stopped, the others get one more seed per look until one is left, the rest are "
        "equivalent within --margin, or --max-seeds (the error rate held over every look)",
    )
    p.add_argument(
        "--max-seeds", type=int, default=None, help=f"with --race (default: {MAX_SEEDS})"
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=None,
        help=f"with --race: its family-wise error rate over all looks (default: {ALPHA:g})",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=None,
        help="with --race: stop when the variants left are shown equivalent within this "
        "difference of the primary metric (default: no equivalence stop)",
    )
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
    if args.cpus_per_trial is not None and args.cpus_per_trial < 1:
        raise UserError(f"--cpus-per-trial: must be at least 1, got {args.cpus_per_trial}")
    if args.test_fraction is not None:
        check_test_fraction(args.test_fraction, "--test-fraction")
    for flag, value in (("--max-seeds", args.max_seeds), ("--alpha", args.alpha),
                        ("--margin", args.margin)):  # fmt: skip
        if value is not None and not args.race:
            raise UserError(f"{flag}: only with --race")
    if args.pack is not None:
        if args.pack < 2:
            raise UserError(f"--pack: must be at least 2 seeds per trial, got {args.pack}")
        if args.race:
            raise UserError("--pack and --race: the race starts one seed at a time")
        if args.replicate is not None:
            raise UserError("--pack and --replicate: pack a space's --seeds instead")
        if args.seeds is None or len(parse_seeds(args.seeds) or []) < 2:
            raise UserError("--pack: needs --seeds with 2 or more seeds to pack")
    if args.race and args.replicate is not None:
        raise UserError("--race and --replicate: race a space (--space) instead")
    if args.race and args.seeds is not None:
        raise UserError("--race and --seeds: the race chooses the seeds (see --max-seeds)")
    if args.race and args.num_samples is not None:
        raise UserError("--race and --num-samples: a race runs seeds of fixed variants")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise UserError(f"--checkpoint-every: must be at least 1, got {args.checkpoint_every}")
    if args.max_failures < -1:
        raise UserError(f"--max-failures: must be -1 (forever) or more, got {args.max_failures}")
    if args.name is not None and (not args.name or "/" in args.name or args.name in (".", "..")):
        raise UserError(f"--name: must be a plain directory name, got {args.name!r}")


def absolute(path: str) -> str:
    """A URI as it is; a local path made absolute (the experiment may run from elsewhere)."""
    return path if is_uri(path) else str(Path(path).expanduser().resolve())


def parse_request(args: argparse.Namespace, argv: Sequence[str], started_at: float) -> RunRequest:
    """The checked, frozen request of parsed arguments (UserError for any bad value). What
    depends on the chosen space is checked by the command against the space."""
    check_numbers(args)
    seeds = parse_seeds(args.seeds)
    if args.replicate:
        if args.space:
            raise UserError("--replicate and --space: choose one (the source decides the configs)")
        if not seeds or len(seeds) < 2:
            raise UserError("--replicate: needs --seeds with at least two seeds (e.g. 51,52,53)")
        source = absolute(args.replicate)
        space, name = REPLICATE_SPACE, f"{Path(source.rstrip('/')).name}-{REPLICATE_SPACE}"
    else:
        if args.top_k is not None:
            raise UserError("--top-k: only with --replicate")
        source, space = None, args.space or DEFAULT_SPACE
        name = space
    local = not is_uri(args.storage_path)  # checks a URI's form
    storage = str(Path(os.path.expanduser(args.storage_path.removeprefix("file://"))).resolve())
    location = Location(storage if local else args.storage_path, args.name or name)
    location.check_fits()
    return RunRequest(
        space=space,
        epochs=args.epochs,
        seeds=None if seeds is None else tuple(seeds),
        num_samples=args.num_samples,
        precision=args.precision,
        smoke_test=args.smoke_test,
        replicate=source,
        top_k=args.top_k,
        lidar_cnn=None if args.lidar_cnn is None else absolute(args.lidar_cnn),
        race=args.race,
        max_seeds=args.max_seeds,
        pack=args.pack,
        alpha=args.alpha,
        margin=args.margin,
        dataset=args.dataset or DEFAULT_SOURCE,
        data_dir=args.data_dir,
        test_fraction=args.test_fraction,
        location=location,
        address=args.address,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_failures=args.max_failures,
        checkpoint_every=args.checkpoint_every,
        wandb=resolve_wandb(args.wandb, args.wandb_project, args.wandb_entity, args.wandb_dir),
        tensorboard=args.tensorboard,
        verbose=args.verbose,
        argv=tuple(argv),
        started_at=started_at,
    )
