"""The CILP driver: the stages of tune_cilp/cilp/stages.py in chain order (contrastive ->
projector -> classifier), then any baselines, each stage a Ray Tune experiment under
``<storage>/<name>/<stage>``, all run by one driver lifecycle (tune_cilp/experiment/driver.py)
under one lock.

Each stage continues, per chain (compared value and seed), from the best trial of the stage
before: its config names that trial's checkpoint file, relative to the experiment (so a copied
or moved experiment resumes where it is now). Stages before the compared one run once per seed
and every compared chain shares them. A finished stage records its choices in
``<stage>/stage.json``; a re-run of the same command skips finished stages and resumes the
unfinished one from Tune's own state.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from ray import tune

from tune_cilp.cilp.cilp_space import CilpSpace
from tune_cilp.cilp.select import Link, by_trial_dir, read_stage, select, write_stage
from tune_cilp.cilp.stages import BASELINES, get_stage, stage_config, stage_names
from tune_cilp.core.checkpoint import in_experiment
from tune_cilp.core.metrics import STATUS_COLUMNS, majority_rate
from tune_cilp.data import CilpArrays
from tune_cilp.experiment.driver import (
    Outcome,
    Session,
    TuneExperiment,
    drive,
    prepare,
)
from tune_cilp.experiment.identity import file_sha256, now
from tune_cilp.experiment.request import RunRequest
from tune_cilp.experiment.run_settings import num_samples, run_epochs, with_run_settings
from tune_cilp.experiment.space import check_param_space
from tune_cilp.experiment.trial import run_trial
from tune_cilp.fusion.fusion_config import TrainConfig
from tune_cilp.results import load_experiment


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
    run's overrides, and the chains: a grid over seeds for the first stage, over the upstream
    checkpoints (the seed following each) downstream, and over the compared values at the
    compared stage. Upstream checkpoints are paths relative to the experiment. A stage the
    space does not list runs on its config's defaults."""
    spec = get_stage(stage)
    names = {f.name for f in fields(spec.config)}
    params = {"stage": stage, **{f.name: f.default for f in fields(spec.config)}}
    params.update(space.stages.get(stage, {}))
    params = with_run_settings(params, epochs=epochs, precision=precision)
    if epochs is not None and isinstance(params.get("head_epochs"), int):
        params["head_epochs"] = min(params["head_epochs"], epochs)
    if "lidar_cnn" in names:  # the stage that maps onto NVIDIA's LiDAR CNN
        params["lidar_cnn"] = lidar_cnn
    if "head_epochs" in names and lidar_cnn is not None:
        params["head_epochs"] = 0  # NVIDIA's head comes trained
    if space.compare is not None and space.compare.stage == stage:
        params[space.compare.key] = tune.grid_search(list(space.compare.values))
    key = spec.upstream_key
    if key is None:
        return with_run_settings(params, seeds=seeds)
    if upstream is None:  # for checking only: a placeholder chain
        return {**params, key: "<upstream>", "seed": 0}
    seed_of = {link.checkpoint: link.seed for link in upstream}
    if len(upstream) == 1:
        return {**params, key: upstream[0].checkpoint, "seed": upstream[0].seed}
    params[key] = tune.grid_search([link.checkpoint for link in upstream])
    params["seed"] = tune.sample_from(lambda spec: seed_of[spec.config[key]])
    return params


def baseline_params(
    space: CilpSpace, seeds: list[int] | None, epochs: int | None, precision: str | None
) -> dict[str, Any]:
    """The reference models: the fusion Trainer's protocol per registry variant and seed."""
    params = {**TrainConfig().to_dict(), "epochs": epochs or space.baseline_epochs}
    params["variant"] = tune.grid_search(list(space.baselines))
    return with_run_settings(params, seeds=seeds, precision=precision)


def trial_dirname(trial: Any) -> str:
    """Short trial directory names (Tune's default spells out the checkpoint path). A seed that
    follows the upstream trial (a sample_from) is not resolved yet when Tune names the folder:
    then the name leaves it out rather than spell out Tune's placeholder."""
    seed = trial.config.get("seed")
    suffix = f"_seed={seed}" if isinstance(seed, int) else ""
    return f"{trial.trainable_name}_{trial.trial_id}{suffix}"


def check_chain(request: RunRequest, space: CilpSpace, epochs: int | None) -> None:
    """Every configuration of every stage (and the baselines), before anything starts."""
    if space.compare is not None:
        get_stage(space.compare.stage)  # one line naming the stages otherwise

    def validate(params: dict[str, Any]) -> Any:
        config = stage_config(params)
        if hasattr(config, "phases"):  # a stage whose epochs train different parts
            config.phases(request.lidar_cnn is not None)
        return config

    for stage in stage_names():
        params = stage_params(
            space, stage, request.seed_list, epochs, request.precision, request.lidar_cnn
        )
        check_param_space(space.name, params, validate)
    if space.baselines:
        params = baseline_params(space, request.seed_list, epochs, request.precision)
        check_param_space(space.name, params, TrainConfig.from_dict)


def finished_stages(experiment: str) -> dict[str, list[Link]]:
    """The finished stages' links, in chain order, with the checkpoints the next stage needs
    checked (present, of the right stage): UserError before anything starts otherwise."""
    from tune_cilp.cilp.stage_trainers import load_stage_checkpoint  # torch: only when resuming

    done: dict[str, list[Link]] = {}
    names = stage_names()
    for name in (*names, BASELINES):
        links = read_stage(os.path.join(experiment, name))
        if links is None:
            break
        done[name] = links
    last = [s for s in names if s in done]
    if last and len(last) < len(names):
        for link in done[last[-1]]:
            load_stage_checkpoint(in_experiment(experiment, link.checkpoint), last[-1])
    return done


def run_chain(request: RunRequest, space: CilpSpace, trainable: Callable[..., None]) -> Outcome:
    """Check everything, then run or resume the chain. trainable: the fusion trial function
    the baselines train with (as for a fusion space)."""
    epochs = run_epochs(request, None)
    if request.lidar_cnn is not None:
        from tune_cilp.cilp.stage_trainers import load_lidar_cnn

        load_lidar_cnn(request.lidar_cnn)  # one line if it is not NVIDIA's LiDAR CNN state dict
    check_chain(request, space, epochs)
    samples = num_samples(request, space.num_samples)
    cnn = request.lidar_cnn
    data, meta = prepare(
        request,
        epochs=epochs,
        samples=samples,
        lidar_cnn_sha256=None if cnn is None else file_sha256(cnn),
    )
    experiment = request.experiment

    def stage_experiment(name: str, done: dict[str, list[Link]]) -> TuneExperiment:
        location = request.location.child(name)
        seeds, precision = request.seed_list, request.precision
        if name == BASELINES:
            return TuneExperiment(
                location,
                f"stage {name}",
                trainable,
                baseline_params(space, seeds, epochs, precision),
                samples,
                STATUS_COLUMNS,
                ["variant", "seed"],
                trial_dirname_creator=trial_dirname,
            )
        stage = get_stage(name)
        upstream = done.get(stage.upstream.name) if stage.upstream else None
        params = stage_params(space, name, seeds, epochs, precision, request.lidar_cnn, upstream)
        compared = space.compare is not None and space.compare.stage == name
        shown = ["seed", *([space.compare.key] if compared else [])]
        return TuneExperiment(
            location,
            f"stage {name}",
            train_stage,
            params,
            samples,
            stage.status_columns,
            shown,
            trial_dirname_creator=trial_dirname,
            epochs_of=lambda config: stage_config(config).total_epochs,
            trainable_kwargs={"experiment_root": experiment},
        )

    def body(session: Session) -> bool:
        done = finished_stages(experiment)
        todo = [*stage_names(), *([BASELINES] if space.baselines else [])]
        for name in [s for s in todo if s not in done]:
            if not session.fit(stage_experiment(name, done)) or session.exit_code:
                return False  # stopped, or a trial failed: the next stage has no input
            trials = load_experiment(os.path.join(experiment, name)).trials
            links: list[Link] = []
            if name != BASELINES:
                stage = get_stage(name)
                up = by_trial_dir(done.get(stage.upstream.name, [])) if stage.upstream else {}
                links = select(name, trials, space.compare, space.name, up)
            write_stage(os.path.join(experiment, name), name, links, now())
            done[name] = links
        return True

    started = request.location.child(stage_names()[0]).started()
    costs = [1.0] * max(1, len(request.seeds or [0]))  # stage trials are alike in cost
    return drive(request, meta, data, started=started, costs=costs, body=body)


def train_stage(
    config: dict[str, Any],
    data: CilpArrays,
    wandb_kwargs: dict[str, str] | None = None,
    experiment_root: str = "",
    checkpoint_every: int | None = None,
) -> None:
    """Train one CILP stage trial (``config["stage"]`` says which), with the same loop as
    the fusion trials; data and W&B arguments arrive the same way, and the chain's directory (or
    URI) as it is now, which the upstream checkpoint path in the config is relative to."""
    from tune_cilp.cilp.stage_trainers import make_trainer

    # A classifier stage's rows carry the majority-class rate like a fusion trial's (its note).
    labels = data.labels[~data.is_train]
    classifies = get_stage(config["stage"]).classifies
    info = {"val_majority_rate": majority_rate(labels)} if classifies else {}
    run_trial(
        lambda: make_trainer(config, data, root=experiment_root),
        config,
        wandb_kwargs,
        info,
        checkpoint_every,
    )
