"""``python -m tune_cilp.run``: run a named search space as a Ray Tune experiment.

Checks every argument first (one-line error, exit 2), loads the data once on the driver, runs
(or resumes) the experiment, and ends with the comparison table.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import tune

from search_spaces import DEFAULT_SPACE, SearchSpace, get_space, list_spaces
from tune_cilp.atomic import atomic_output
from tune_cilp.data import CilpArrays, default_data_dir, load_arrays
from tune_cilp.errors import UserError, run_cli
from tune_cilp.run_args import (
    build_parser,
    check_address,
    check_numbers,
    is_uri,
    local_storage,
    parse_seeds,
)
from tune_cilp.trainable import train_cilp
from tune_cilp.wandb_setup import resolve_mode, wandb_env, wandb_init_kwargs

META_FILE = "tune_cilp.json"
SMOKE_PER_CLASS = {True: 16, False: 8}  # train / validation scenes per class: 32 + 16
DEFAULT_GPU_FRACTION = 0.25
CHECKPOINTS_TO_KEEP = 2  # the latest two: enough to resume, bounded disk
METRIC_COLUMNS = {
    "training_iteration": "epoch",
    "train_loss": "train_loss",
    "val_loss": "val_loss",
    "val_accuracy": "val_acc",
    "val_balanced_accuracy": "val_bal_acc",
    "epoch_time_s": "epoch_s",
}


def smoke_subset(data: CilpArrays) -> CilpArrays:
    """A few scenes of both classes on both sides of the split (32 train + 16 validation)."""
    picks = [
        np.flatnonzero((data.is_train == split) & (data.labels == label))[:per_class]
        for split, per_class in SMOKE_PER_CLASS.items()
        for label in (0, 1)
    ]
    return data.subset(np.sort(np.concatenate(picks)))


def param_space(
    space: SearchSpace, epochs: int, seeds: list[int] | None, precision: str | None = None
) -> dict[str, Any]:
    """The space's param space with the run's epochs, precision and seeds (a grid over seeds)."""
    params = {**space.param_space, "epochs": epochs}
    if precision is not None:
        params["precision"] = precision
    if seeds is not None:
        if not space.grid_seeds:
            raise UserError(
                f"--seeds: space {space.name!r} samples its configurations; "
                "rerun its best configuration per seed instead"
            )
        params["seed"] = tune.grid_search(seeds) if len(seeds) > 1 else seeds[0]
    return params


def write_meta(experiment: str, local: bool, meta: dict[str, Any]) -> None:
    """tune_cilp.json in the experiment directory (atomic), so the analysis finds the data."""
    import pyarrow.fs

    text = json.dumps(meta, indent=2)
    if local:
        Path(experiment).mkdir(parents=True, exist_ok=True)
        with atomic_output(Path(experiment) / META_FILE, "w") as f:
            f.write(text)
        return
    fs, path = pyarrow.fs.FileSystem.from_uri(experiment)
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/{META_FILE}") as out:
        out.write(text.encode())


def new_tuner(
    trainable: Any, args: Any, space: SearchSpace, params: dict[str, Any], storage: str
) -> Any:
    """A Tuner for a new experiment: the space's scheduler and searcher, W&B, checkpoints."""
    num_samples = args.num_samples or (
        min(space.num_samples, 2) if args.smoke_test else space.num_samples
    )
    return tune.Tuner(
        trainable,
        param_space=params,
        tune_config=tune.TuneConfig(
            metric=space.metric,
            mode=space.mode,
            num_samples=num_samples,
            scheduler=space.make_scheduler(params["epochs"]),
            search_alg=space.make_search_alg(),
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=args.name,
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=args.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_TO_KEEP),
            verbose=1,  # the status table only; every result is in the experiment directory
            progress_reporter=tune.CLIReporter(
                metric_columns=METRIC_COLUMNS,
                parameter_columns=["variant", "downsample", "seed"],
                max_report_frequency=10,
                sort_by_metric=True,
            ),
        ),
    )


def start_ray(address: str | None, env: dict[str, str]) -> bool:
    """Connect to (or start) Ray; True if this call started it. An initialised Ray is reused."""
    if ray.is_initialized():
        return False
    # Ray's runtime-env agent logs every runtime env at INFO, env_vars included: Tune puts the
    # AWS_* credentials there for each trial, the W&B callback the API key. At "warning" a local
    # Ray writes neither to its session logs.
    os.environ.setdefault("RAY_LOGGER_LEVEL", "warning")
    try:
        ray.init(address=address, runtime_env={"env_vars": env}, include_dashboard=False)
    except ConnectionError as exc:
        raise UserError(f"--address: cannot connect to Ray at {address} ({exc})") from None
    return True


def trial_resources(args: Any) -> dict[str, float]:
    """CPUs and GPU fraction per trial, checked against the cluster (a trial that cannot fit
    would wait forever)."""
    cluster = ray.cluster_resources()
    gpus = args.gpus_per_trial
    if gpus is None:
        gpus = DEFAULT_GPU_FRACTION if cluster.get("GPU", 0) > 0 else 0.0
    if gpus > cluster.get("GPU", 0):
        raise UserError(f"--gpus-per-trial: {gpus:g} requested but the Ray cluster has no GPU")
    if args.cpus_per_trial > cluster.get("CPU", 0):
        raise UserError(
            f"--cpus-per-trial: {args.cpus_per_trial:g} requested but the Ray cluster has "
            f"{cluster.get('CPU', 0):g} CPUs"
        )
    if gpus == 0:
        print(f"no GPU: running on CPU cores ({args.cpus_per_trial:g} per trial)")
    return {"cpu": args.cpus_per_trial, "gpu": gpus}


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or resume) an experiment and print the comparison table; returns the exit code."""
    t_start = time.time()
    args = build_parser().parse_args(argv)
    if args.list_spaces:
        for space in list_spaces():
            print(f"{space.name:15s} {space.description}")
        return 0

    # Every check before anything starts.
    space = get_space(args.space or DEFAULT_SPACE)
    args.name = args.name or space.name
    check_numbers(args)
    epochs = args.epochs or (1 if args.smoke_test else space.epochs)
    params = param_space(space, epochs, parse_seeds(args.seeds), args.precision)
    check_address(args.address)
    local = not is_uri(args.storage_path)
    storage = str(local_storage(args.storage_path)) if local else args.storage_path
    experiment = f"{storage.rstrip('/')}/{args.name}"
    data = load_arrays(args.dataset, data_dir=args.data_dir)
    if args.smoke_test:
        data = smoke_subset(data)
    args.wandb = resolve_mode(args.wandb)
    meta = {
        "space": space.name,
        "dataset": args.dataset,
        "data_dir": str(default_data_dir(args.data_dir).resolve()),
        "smoke_test": args.smoke_test,
        "argv": list(sys.argv[1:] if argv is None else argv),
    }

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's classic status table (CLIReporter)
    # Tune snapshots its state each num_to_keep checkpoints (what makes resume exact); short
    # epochs make it warn about that on every snapshot.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    print(f"experiment: {experiment}")
    started = start_ray(args.address, wandb_env(args.wandb))
    try:
        wandb_dir = Path(experiment) if local else None
        trainable = tune.with_resources(
            tune.with_parameters(
                train_cilp, data=data, wandb_kwargs=wandb_init_kwargs(args.wandb, wandb_dir)
            ),
            trial_resources(args),
        )
        if tune.Tuner.can_restore(experiment):
            print(f"resuming experiment {experiment} (its original settings apply)")
            tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True)
        else:
            write_meta(experiment, local, meta)
            tuner = new_tuner(trainable, args, space, params, storage)
        print(f"setup took {time.time() - t_start:.1f} s; starting trials")
        results = tuner.fit()
    finally:
        if started:
            ray.shutdown()

    from analysis import report  # here: its plotting imports are not needed before this point

    print(report(experiment, fmt="grid"))
    print(f"experiment: {experiment}")
    return 1 if results.errors else 0


if __name__ == "__main__":
    run_cli(main)
