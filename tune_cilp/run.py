"""``python -m tune_cilp.run``: run a named search space as a Ray Tune experiment.

Checks every argument first (one-line error, exit 2), loads the data once on the driver, runs
(or resumes) the experiment, and ends with the comparison table.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import tune

from tune_cilp.cilp.space import CilpSpace
from tune_cilp.core.errors import UserError, run_cli
from tune_cilp.core.metrics import STATUS_COLUMNS
from tune_cilp.data import DEFAULT_SOURCE, CilpArrays, default_data_dir, is_synthetic, load_arrays
from tune_cilp.experiment import graceful_stop
from tune_cilp.experiment.cpu_plan import plan, trial_costs
from tune_cilp.experiment.graceful_stop import INTERRUPTED
from tune_cilp.experiment.identity import (
    META_FILE,
    ExperimentMeta,
    check_same,
    fingerprint,
    now,
    read_meta,
    write_meta,
)
from tune_cilp.experiment.lock import hold_experiment
from tune_cilp.experiment.ray_session import forget_session, reap_dead_session, start_ray
from tune_cilp.experiment.space import SearchSpace, check_param_space
from tune_cilp.experiment.trial import train_cilp
from tune_cilp.experiment.trial_rows import trim_unsaved_rows
from tune_cilp.experiment.tune_settings import apply_tune_settings, result_loggers
from tune_cilp.experiment.wandb_setup import resolve_mode, wandb_env, wandb_init_kwargs
from tune_cilp.replicate import Pick, pick_configs, replicate_space
from tune_cilp.run_args import (
    build_parser,
    check_address,
    check_numbers,
    is_uri,
    local_storage,
    parse_seeds,
)
from tune_cilp.spaces import DEFAULT_SPACE, get_space, list_spaces
from tune_cilp.training.config import TrainConfig

SMOKE_PER_CLASS = {True: 16, False: 8}  # train / validation scenes per class: 32 + 16
DEFAULT_GPU_FRACTION = 0.25
CHECKPOINTS_TO_KEEP = 2  # the latest two: enough to resume, bounded disk


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
    """The space's param space with the run's epochs, precision and seeds (a grid over seeds),
    over TrainConfig's defaults, so that every trial's config names its whole protocol."""
    params = {**TrainConfig().to_dict(), **space.param_space, "epochs": epochs}
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


def new_tuner(
    trainable: Any,
    args: Any,
    space: SearchSpace,
    params: dict[str, Any],
    experiment: str,
    callbacks: list[Any],
) -> Any:
    """A Tuner for a new experiment: the space's scheduler and searcher, checkpoints, callbacks."""
    storage, _, name = experiment.rpartition("/")
    return tune.Tuner(
        trainable,
        param_space=params,
        tune_config=tune.TuneConfig(
            metric=space.metric,
            mode=space.mode,
            num_samples=num_samples(args, space),
            scheduler=space.make_scheduler(params["epochs"]),
            search_alg=space.make_search_alg(),
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            callbacks=[*callbacks, *result_loggers(args.tensorboard)],
            failure_config=tune.FailureConfig(max_failures=args.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_TO_KEEP),
            verbose=1,  # the status table only; every result is in the experiment directory
            progress_reporter=tune.CLIReporter(
                metric_columns=STATUS_COLUMNS,
                parameter_columns=["variant", "downsample", "seed"],
                max_report_frequency=10,
                sort_by_metric=True,
            ),
        ),
    )


def trial_resources(args: Any, costs: list[float]) -> dict[str, float]:
    """CPUs and GPU fraction per trial, checked against the cluster (a trial that cannot fit
    would wait forever). Without GPUs and without --cpus-per-trial, the CPU plan decides from
    the trials' relative `costs`."""
    cluster = ray.cluster_resources()
    gpus = args.gpus_per_trial
    if gpus is None:
        gpus = DEFAULT_GPU_FRACTION if cluster.get("GPU", 0) > 0 else 0.0
    if gpus > cluster.get("GPU", 0):
        raise UserError(f"--gpus-per-trial: {gpus:g} requested but the Ray cluster has no GPU")
    cpus = args.cpus_per_trial
    if cpus is None and gpus == 0:
        nodes = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
        cpu_plan = plan(costs, nodes)
        print(cpu_plan.describe(len(costs)))
        cpus = cpu_plan.threads
    cpus = cpus or 1.0  # with GPUs: one core feeds each trial's share of a GPU
    if cpus > cluster.get("CPU", 0):
        raise UserError(
            f"--cpus-per-trial: {cpus:g} requested but the Ray cluster has "
            f"{cluster.get('CPU', 0):g} CPUs"
        )
    if gpus == 0:
        print(f"no GPU: running on CPU cores ({cpus:g} per trial)")
    return {"cpu": cpus, "gpu": gpus}


def replicated_space(args: Any, seeds: list[int] | None) -> tuple[SearchSpace, list[Pick]]:
    """--replicate: the source's best configurations x --seeds as a search space, and the picks
    (recorded in tune_cilp.json: where the configurations came from)."""
    if args.space:
        raise UserError("--replicate and --space: choose one (the source decides the configs)")
    if not seeds or len(seeds) < 2:
        raise UserError("--replicate: needs --seeds with at least two seeds (e.g. 51,52,53)")
    if not is_uri(args.replicate):
        args.replicate = str(Path(args.replicate).expanduser().resolve())
    picks = pick_configs(args.replicate, args.top_k)
    overrides: dict[str, Any] = {}
    if args.epochs or args.smoke_test:
        overrides["epochs"] = args.epochs or 1
    if args.precision:
        overrides["precision"] = args.precision
    space = replicate_space(args.replicate, picks, seeds, overrides)
    if args.name is None:
        args.name = f"{Path(args.replicate.rstrip('/')).name}-{space.name}"
    return space, picks


def load_run(
    args: Any,
    space_name: str,
    *,
    epochs: int | None,
    seeds: list[int] | None,
    samples: int | None,
    argv: list[str],
    **extra: Any,
) -> tuple[CilpArrays, ExperimentMeta]:
    """The run's data (loaded once, the smoke-test subset if asked) and its identity as
    tune_cilp.json records it; `extra`: the ExperimentMeta fields particular to the run."""
    dataset = args.dataset or DEFAULT_SOURCE
    data = load_arrays(dataset, data_dir=args.data_dir)
    if args.smoke_test:
        data = smoke_subset(data)
    args.wandb = resolve_mode(args.wandb)
    meta = ExperimentMeta(
        space=space_name,
        dataset=dataset,
        data_fingerprint=fingerprint(data),
        data_dir=str(default_data_dir(args.data_dir).resolve()) if is_synthetic(dataset) else None,
        smoke_test=args.smoke_test,
        epochs=epochs,
        seeds=seeds,
        num_samples=samples,
        precision=args.precision,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        argv=argv,
        created_at=now(),
        **extra,
    )
    return data, meta


def num_samples(args: Any, space: SearchSpace) -> int:
    """Tune's num_samples: --num-samples, else the space's (at most 2 in a smoke test)."""
    if args.num_samples:
        return args.num_samples
    return min(space.num_samples, 2) if args.smoke_test else space.num_samples


def main(argv: Sequence[str] | None = None, trainable: Callable[..., None] = train_cilp) -> int:
    """Run (or resume) an experiment and print the comparison table; returns the exit code.

    trainable: the Tune function trainable (``train_cilp``, or a wrapper of it: how the tests
    inject failing trials).
    """
    t_start = time.time()
    args = build_parser().parse_args(argv)
    if args.list_spaces:
        for space in list_spaces():
            print(f"{space.name:15s} {space.description}")
        return 0

    # Every check before anything starts.
    if not args.replicate:
        chosen = get_space(args.space or DEFAULT_SPACE)
        if isinstance(chosen, CilpSpace):  # a chain of three Tune experiments: its own driver
            from tune_cilp.cilp.chain import run_chain

            return run_chain(args, chosen, list(sys.argv[1:] if argv is None else argv), t_start)
    if args.lidar_cnn is not None:
        raise UserError(f"--lidar-cnn: only for CILP spaces, not {args.space or DEFAULT_SPACE!r}")
    check_numbers(args)
    seeds = parse_seeds(args.seeds)
    if args.replicate:
        space, picks = replicated_space(args, seeds)
        params = param_space(space, space.epochs, None, args.precision)
    else:
        if args.top_k is not None:
            raise UserError("--top-k: only with --replicate")
        space, picks = get_space(args.space or DEFAULT_SPACE), []
        epochs = args.epochs or (1 if args.smoke_test else space.epochs)
        params = param_space(space, epochs, seeds, args.precision)
    args.name = args.name or space.name
    check_param_space(space.name, params)
    check_address(args.address)
    local = not is_uri(args.storage_path)
    storage = str(local_storage(args.storage_path)) if local else args.storage_path
    experiment = f"{storage.rstrip('/')}/{args.name}"
    data, meta = load_run(
        args,
        space.name,
        epochs=params["epochs"],
        seeds=seeds,
        samples=num_samples(args, space),
        argv=list(sys.argv[1:] if argv is None else argv),
        replicate=args.replicate,
        top_k=args.top_k,
        picks=[{"trial_id": p.trial_id, "val_loss": p.val_loss, "config": p.config} for p in picks],
    )

    print(f"experiment: {experiment}")
    with hold_experiment(experiment, local):
        stored = read_meta(experiment)
        restoring = tune.Tuner.can_restore(experiment)
        if stored is not None:
            check_same(experiment, stored, meta)
            meta = stored
        elif restoring:
            raise UserError(
                f"{experiment}: a Ray Tune experiment without {META_FILE} (not made by "
                "python -m tune_cilp.run); use a new --name for a new experiment"
            )
        if restoring and meta.finished_at:
            from analysis import report  # here: the analysis imports are not needed before

            print(f"experiment {experiment} is finished ({meta.finished_at}); its table:")
            print(report(experiment, fmt="grid"))
            return 0
        try:
            return run_experiment(
                args, space, params, data, experiment, meta, restoring, t_start, trainable
            )
        except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, from the last checkpoints
            print(INTERRUPTED, file=sys.stderr)
            return 130


def run_experiment(
    args: Any,
    space: SearchSpace,
    params: dict[str, Any],
    data: CilpArrays,
    experiment: str,
    meta: ExperimentMeta,
    restoring: bool,
    t_start: float,
    train_fn: Callable[..., None],
) -> int:
    """Start Ray, run or resume the Tuner, and end with the table (the driver lock is held)."""
    local = not is_uri(experiment)
    record_dir = experiment if local else None
    if record_dir is not None:
        reaped = reap_dead_session(record_dir)
        if reaped:
            print(f"stopped {reaped} leftover Ray process(es) of this experiment's dead driver")
    apply_tune_settings(local, restoring)
    stop = graceful_stop.fresh()
    results = None
    # From before ray.init (a Ctrl-C during start-up is not lost) until after ray.shutdown()
    # (Ray logs late errors then).
    with stop.installed():
        started = start_ray(args.address, wandb_env(args.wandb), record_dir)
        stop.reinstall()  # Ray's core worker sets a SIGTERM handler of its own
        try:
            wandb_dir = Path(experiment) if local else None
            trainable = tune.with_resources(
                tune.with_parameters(
                    train_fn, data=data, wandb_kwargs=wandb_init_kwargs(args.wandb, wandb_dir)
                ),
                trial_resources(args, trial_costs(params, meta.num_samples or 1)),
            )
            if restoring:
                print(f"resuming experiment {experiment}")
                if local:
                    for line in trim_unsaved_rows(experiment):
                        print(line)
                tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True)
            else:
                write_meta(experiment, meta)
                tuner = new_tuner(trainable, args, space, params, experiment, [stop])
            print(f"setup took {time.time() - t_start:.1f} s; starting trials")
            try:
                results = None if stop.interrupted else tuner.fit()
            except Exception as exc:  # Tune's own writes failing, or reading what they left
                stop.note(exc)
                if stop.storage_error is None:
                    raise
        finally:
            if started:
                ray.shutdown()
                forget_session(record_dir)

    code = stop.stopped_exit_code(experiment, local)
    if code is not None:
        return code
    from analysis import experiment_table, format_table, load_experiment

    loaded = load_experiment(experiment)
    if not results.errors and all(t.status == "TERMINATED" for t in loaded.trials):
        meta.finished_at = now()
        write_meta(experiment, meta)
    print(format_table(experiment_table(loaded), "grid"))
    print(f"experiment: {experiment}")
    return 1 if results.errors else 0


if __name__ == "__main__":
    run_cli(main)
