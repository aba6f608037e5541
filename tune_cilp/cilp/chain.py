"""The CILP driver: contrastive -> projector -> classifier (then any baselines), each stage a
Ray Tune experiment under ``<storage>/<name>/<stage>``, one driver lock for the whole chain.

Each stage continues, per chain (compared value and seed), from the best trial of the stage
before: its config names that trial's checkpoint file. A finished stage records its choices in
``<stage>/stage.json``; a re-run of the same command skips finished stages and resumes the
unfinished one from Tune's own state.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import ray
from ray import tune

from tune_cilp.cilp.select import Link, by_trial_dir, read_stage, select, write_stage
from tune_cilp.cilp.space import CilpSpace
from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import CILP_EPOCH, CILP_STAGES, STATUS_COLUMNS, status_columns
from tune_cilp.experiment import graceful_stop
from tune_cilp.experiment.graceful_stop import INTERRUPTED
from tune_cilp.experiment.identity import (
    check_same,
    now,
    read_meta,
    write_meta,
)
from tune_cilp.experiment.lock import hold_experiment
from tune_cilp.experiment.ray_session import forget_session, reap_dead_session, start_ray
from tune_cilp.experiment.space import check_param_space
from tune_cilp.experiment.trial import train_cilp, train_stage
from tune_cilp.experiment.trial_rows import trim_unsaved_rows
from tune_cilp.experiment.tune_settings import apply_tune_settings, result_loggers
from tune_cilp.experiment.wandb_setup import wandb_env, wandb_init_kwargs
from tune_cilp.run import CHECKPOINTS_TO_KEEP, load_run, trial_resources
from tune_cilp.run_args import check_address, check_numbers, is_uri, local_storage, parse_seeds
from tune_cilp.training.config import TrainConfig
from tune_cilp.training.stage_config import CONFIGS, UPSTREAM_KEY, stage_config
from tune_cilp.training.stage_loop import load_stage_checkpoint
from tune_cilp.training.stages import load_lidar_cnn

BASELINES = "baselines"  # the reference models' experiment, beside the stages


def stage_params(
    space: CilpSpace,
    stage: str,
    seeds: list[int] | None,
    epochs: int | None,
    precision: str | None,
    lidar_cnn: str | None,
    upstream: list[Link] | None = None,
) -> dict[str, Any]:
    """The Tune param space of one stage: its config's defaults, the space's entries, the
    run's overrides, and the chains: a grid over seeds (and compared values) for the
    contrastive stage, over the upstream checkpoints (the seed following each) downstream."""
    cls = CONFIGS[stage]
    params = {"stage": stage, **{f.name: f.default for f in fields(cls)}, **space.stages[stage]}
    if epochs is not None:
        params["epochs"] = epochs
        if isinstance(params.get("head_epochs"), int):
            params["head_epochs"] = min(params["head_epochs"], epochs)
    if precision is not None:
        params["precision"] = precision
    if stage == "projector":
        params["lidar_cnn"] = lidar_cnn
    if stage == "classifier" and lidar_cnn is not None:
        params["head_epochs"] = 0  # NVIDIA's head comes trained
    if stage == "contrastive":
        if seeds is not None:
            params["seed"] = tune.grid_search(seeds) if len(seeds) > 1 else seeds[0]
        if space.compare is not None:
            key, values = space.compare
            params[key] = tune.grid_search(list(values))
        return params
    key = UPSTREAM_KEY[stage]
    if upstream is None:  # for checking only: a placeholder chain
        return {**params, key: "<upstream>", "seed": 0}
    seed_of = {link.checkpoint: link.seed for link in upstream}
    if len(upstream) == 1:
        return {**params, key: upstream[0].checkpoint, "seed": upstream[0].seed}
    params[key] = tune.grid_search([link.checkpoint for link in upstream])
    params["seed"] = tune.sample_from(lambda spec: seed_of[spec.config[key]])
    return params


def baseline_params(space: CilpSpace, seeds, epochs, precision) -> dict[str, Any]:
    """The reference models: the fusion Trainer's protocol per registry variant and seed."""
    params = {**TrainConfig().to_dict(), "epochs": epochs or space.baseline_epochs}
    params["variant"] = tune.grid_search(list(space.baselines))
    if seeds is not None:
        params["seed"] = tune.grid_search(seeds) if len(seeds) > 1 else seeds[0]
    if precision is not None:
        params["precision"] = precision
    return params


def run_chain(args: Any, space: CilpSpace, argv: list[str], t_start: float) -> int:
    """``python -m tune_cilp.run --space <a CILP space>``: check everything, then run or resume
    the chain and print the CILP table; returns the exit code."""
    check_numbers(args)
    args.name = args.name or space.name
    epochs = args.epochs or (1 if args.smoke_test else None)
    seeds = parse_seeds(args.seeds)
    lidar_cnn = None
    if args.lidar_cnn is not None:
        lidar_cnn = str(Path(args.lidar_cnn).expanduser().resolve())
        load_lidar_cnn(lidar_cnn)  # one line if it is not NVIDIA's LiDAR CNN state dict
    for stage in CILP_STAGES:
        params = stage_params(space, stage, seeds, epochs, args.precision, lidar_cnn)
        check_param_space(space.name, params, stage_config)
        if stage == "classifier":
            stage_config({**params, "seed": 0}).phases(lidar_cnn is not None)
    if space.baselines:
        check_param_space(space.name, baseline_params(space, seeds, epochs, args.precision))
    check_address(args.address)
    local = not is_uri(args.storage_path)
    if not local:
        raise UserError("--storage-path: CILP chains need a local or NFS storage path")
    experiment = str(local_storage(args.storage_path) / args.name)
    data, meta = load_run(
        args,
        space.name,
        epochs=epochs,
        seeds=seeds,
        samples=args.num_samples or space.num_samples,
        argv=argv,
        lidar_cnn=lidar_cnn,
    )
    print(f"experiment: {experiment}")
    with hold_experiment(experiment, local):
        stored = read_meta(experiment)
        if stored is not None:
            check_same(experiment, stored, meta)
            meta = stored
        elif os.path.isdir(os.path.join(experiment, CILP_STAGES[0])):
            raise UserError(
                f"{experiment}: stage directories without tune_cilp.json (not made by "
                "python -m tune_cilp.run); use a new --name for a new experiment"
            )
        from analysis.cilp_table import cilp_report

        if meta.finished_at:
            print(f"experiment {experiment} is finished ({meta.finished_at}); its table:")
            print(cilp_report(experiment, fmt="grid"))
            return 0
        done = finished_stages(experiment)
        if stored is None:
            write_meta(experiment, meta)
        try:
            code = _run_stages(
                args, space, data, experiment, seeds, epochs, lidar_cnn, done, t_start
            )
        except KeyboardInterrupt:
            print(INTERRUPTED, file=sys.stderr)
            return 130
        if code == 0:
            meta.finished_at = now()
            write_meta(experiment, meta)
            print(cilp_report(experiment, fmt="grid"))
            print(f"experiment: {experiment}")
        return code


def finished_stages(experiment: str) -> dict[str, list[Link]]:
    """The finished stages' links, in chain order, with the checkpoints the next stage needs
    checked (present, of the right stage): UserError before anything starts otherwise."""
    done: dict[str, list[Link]] = {}
    for stage in (*CILP_STAGES, BASELINES):
        links = read_stage(os.path.join(experiment, stage))
        if links is None:
            break
        done[stage] = links
    last = [s for s in CILP_STAGES if s in done]
    if last and len(last) < len(CILP_STAGES):
        for link in done[last[-1]]:
            load_stage_checkpoint(link.checkpoint, last[-1])
    return done


def _run_stages(args, space, data, experiment, seeds, epochs, lidar_cnn, done, t_start) -> int:
    reaped = reap_dead_session(experiment)
    if reaped:
        print(f"stopped {reaped} leftover Ray process(es) of this experiment's dead driver")
    stop = graceful_stop.fresh()
    wandb_kwargs = wandb_init_kwargs(args.wandb, Path(experiment))
    compare_key = space.compare[0] if space.compare else None
    todo = [s for s in (*CILP_STAGES, *([BASELINES] if space.baselines else [])) if s not in done]
    with stop.installed():  # from before ray.init: a Ctrl-C during start-up is not lost
        started = start_ray(args.address, wandb_env(args.wandb), experiment)
        stop.reinstall()  # Ray's core worker sets a SIGTERM handler of its own
        try:
            # Stage trials are alike in cost: the CPU plan sees them as equal.
            resources = trial_resources(args, [1.0] * max(1, len(seeds or [0])))
            print(f"setup took {time.time() - t_start:.1f} s; starting the chain")
            upstream: list[Link] | None = done.get(CILP_STAGES[-1])
            for stage in todo:
                if stage == BASELINES:
                    params = baseline_params(space, seeds, epochs, args.precision)
                    fn, columns = train_cilp, STATUS_COLUMNS
                else:
                    previous = (
                        CILP_STAGES[CILP_STAGES.index(stage) - 1]
                        if stage != "contrastive"
                        else None
                    )
                    upstream = done.get(previous) if previous else None
                    params = stage_params(
                        space, stage, seeds, epochs, args.precision, lidar_cnn, upstream
                    )
                    fn, columns = train_stage, status_columns(CILP_EPOCH[stage])
                trainable = tune.with_resources(
                    tune.with_parameters(fn, data=data, wandb_kwargs=wandb_kwargs), resources
                )
                stage_dir = os.path.join(experiment, stage)
                results = _fit(args, space, stage, trainable, params, experiment, stop, columns)
                code = stop.stopped_exit_code(stage_dir)
                if code is not None:
                    return code
                if results.errors:
                    print(
                        f"error: stage {stage}: {len(results.errors)} trial(s) failed (see "
                        "error.txt in their directories); re-run the same command to retry",
                        file=sys.stderr,
                    )
                    return 1
                from tune_cilp.results import load_experiment

                trials = load_experiment(stage_dir).trials
                if stage == BASELINES:
                    links: list[Link] = []
                else:
                    up = by_trial_dir(upstream or [])
                    links = select(stage, trials, compare_key, space.name, up)
                write_stage(stage_dir, stage, links, now())
                done[stage] = links
        finally:
            if started:
                ray.shutdown()
                forget_session(experiment)
    return 0


def trial_dirname(trial: Any) -> str:
    """Short trial directory names (Tune's default spells out the checkpoint path)."""
    return f"{trial.trainable_name}_{trial.trial_id}_seed={trial.config.get('seed')}"


def _fit(args, space, stage, trainable, params, experiment, stop, columns):
    stage_dir = os.path.join(experiment, stage)
    restoring = tune.Tuner.can_restore(stage_dir)
    apply_tune_settings(not is_uri(experiment), restoring)
    if restoring:
        print(f"resuming stage {stage}")
        if not is_uri(stage_dir):
            for line in trim_unsaved_rows(stage_dir):
                print(line)
        tuner = tune.Tuner.restore(stage_dir, trainable=trainable, resume_errored=True)
    else:
        print(f"starting stage {stage}")
        shown = ["seed", *([space.compare[0]] if space.compare and stage == "contrastive" else [])]
        tuner = tune.Tuner(
            trainable,
            param_space=params,
            tune_config=tune.TuneConfig(
                metric="val_loss",
                mode="min",
                num_samples=args.num_samples or space.num_samples,
                reuse_actors=True,
                trial_dirname_creator=trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=stage,
                storage_path=experiment,
                callbacks=[stop, *result_loggers(args.tensorboard)],
                failure_config=tune.FailureConfig(max_failures=args.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_TO_KEEP),
                verbose=1,
                progress_reporter=tune.CLIReporter(
                    metric_columns=columns,
                    parameter_columns=["variant", *shown] if stage == BASELINES else shown,
                    max_report_frequency=10,
                    sort_by_metric=True,
                ),
            ),
        )
    if stop.interrupted:  # during start-up or between stages
        return None
    try:
        return tuner.fit()
    except Exception as exc:
        stop.note(exc)
        if stop.storage_error is None:
            raise
        return None
