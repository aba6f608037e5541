"""The driver's lifecycle, once, for every kind of run (a fusion space, --replicate, each stage
of a CILP chain):

    drive(request, meta, started, body)
      print the experiment; take its driver lock; check the stored identity (tune_cilp.json)
      against this run's, or refuse a Ray Tune directory the tool did not make; a finished
      experiment returns at once; a new one records its identity; then, with Ctrl-C / SIGTERM
      turned into a stop at an epoch's end, body(session) runs the fits:
        session.fit(TuneExperiment)  - starts Ray on first use (reaping a dead driver's Ray;
                                       a watchdog stops this one when the driver ends), sizes
                                       the trials, sets aside a state a storage failure cut
                                       short (said in one line), restores (trimming unsaved
                                       rows) or builds the Tuner, fits, and turns a stop, a
                                       storage failure or failed trials into their one line
      a run that completed every trial is marked finished in tune_cilp.json.

The caller prints the table (drivers return an Outcome; this layer imports no analysis).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import tune

from tune_cilp.core.errors import UserError
from tune_cilp.data import CilpArrays, default_data_dir, is_synthetic, load_arrays
from tune_cilp.experiment import graceful_stop, progress
from tune_cilp.experiment.cpu_plan import plan
from tune_cilp.experiment.graceful_stop import INTERRUPTED, GracefulStop
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
from tune_cilp.experiment.ray_session import (
    check_address,
    reap_dead_session,
    start_ray,
    stop_ray,
)
from tune_cilp.experiment.request import RunRequest
from tune_cilp.experiment.state_repair import check_before_resuming
from tune_cilp.experiment.storage import Location, local_storage
from tune_cilp.experiment.trial_rows import trim_unsaved_rows
from tune_cilp.experiment.tune_settings import apply_tune_settings, result_loggers
from tune_cilp.experiment.wandb_setup import wandb_env, wandb_init_kwargs

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


def prepare(
    request: RunRequest, *, epochs: int | None, samples: int | None, **extra: Any
) -> tuple[CilpArrays, ExperimentMeta]:
    """After the space's checks (a bad space writes nothing): the cluster reachable, local
    storage created and writable, the data loaded once on the driver (the smoke-test subset
    if asked), and the run's identity; `extra`: ExperimentMeta fields particular to the run."""
    check_address(request.address)
    if request.local:
        local_storage(request.location.parent)
    data = load_arrays(request.dataset, data_dir=request.data_dir)
    if request.smoke_test:
        data = smoke_subset(data)
    return data, identity(request, data, epochs=epochs, samples=samples, **extra)


def identity(
    request: RunRequest, data: CilpArrays, *, epochs: int | None, samples: int | None, **extra: Any
) -> ExperimentMeta:
    """The run's identity as tune_cilp.json records it; `extra`: fields particular to the run."""
    synthetic = is_synthetic(request.dataset)
    return ExperimentMeta(
        space=request.space,
        dataset=request.dataset,
        data_fingerprint=fingerprint(data),
        data_dir=str(default_data_dir(request.data_dir).resolve()) if synthetic else None,
        smoke_test=request.smoke_test,
        epochs=epochs,
        seeds=request.seed_list,
        num_samples=samples,
        precision=request.precision,
        cpus_per_trial=request.cpus_per_trial,
        gpus_per_trial=request.gpus_per_trial,
        argv=list(request.argv),
        created_at=now(),
        replicate=request.replicate,
        top_k=request.top_k,
        lidar_cnn=request.lidar_cnn,
        test_fraction=request.test_fraction,
        pack=request.pack,
        **extra,
    )


@dataclass(frozen=True)
class TuneExperiment:
    """One Ray Tune experiment to fit: a fusion run, or one stage of a CILP chain."""

    location: Location  # where it lives
    label: str  # how the driver's lines name it: "experiment <path>", "stage projector"
    # a function trainable taking (config, data, wandb_kwargs, checkpoint_every)
    trainable: Callable[..., None]
    params: dict[str, Any]
    num_samples: int
    status_columns: dict[str, str]
    parameter_columns: list[str]
    metric: str = "val_loss"
    mode: str = "min"
    scheduler: Any = None
    search_alg: Any = None
    trial_dirname_creator: Callable[[Any], str] | None = None
    epochs_of: Callable[[Mapping[str, Any]], int] | None = None  # a config's epochs (progress)
    # More arguments for the trainable, given anew on every run (a resume included), e.g. where
    # the experiment is now
    trainable_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return self.location.path


@dataclass(frozen=True)
class Outcome:
    """What a driver did: the exit code, and whether there is a table to print."""

    experiment: str
    exit_code: int
    complete: bool  # every fit ran to its end (failed trials included): its table is whole
    finished_before: str | None = None  # finished_at of an experiment that needed no run


@dataclass
class Session:
    """The Ray side of one driver run: started on the first fit, stopped by drive()."""

    request: RunRequest
    data: CilpArrays
    stop: GracefulStop
    costs: list[float]  # the trials' relative costs for the CPU plan
    exit_code: int = 0
    all_completed: bool = True  # no trial failed in any fit
    _resources: dict[str, float] | None = None
    _ray_started: bool = False  # by this driver (not an --address cluster's)

    def _start(self) -> dict[str, float]:
        if self._resources is not None:
            return self._resources
        record_dir = self.request.experiment if self.request.local else None
        if record_dir is not None:
            reaped = reap_dead_session(record_dir)
            if reaped:
                print(f"stopped {reaped} leftover Ray process(es) of this experiment's dead driver")
        env = wandb_env(self.request.wandb)
        self._ray_started = start_ray(self.request.address, env, record_dir)
        self.stop.reinstall()  # Ray's core worker sets a SIGTERM handler of its own
        self._resources = trial_resources(self.request, self.costs)
        print(f"setup took {time.time() - self.request.started_at:.1f} s; starting trials")
        return self._resources

    def shutdown(self) -> None:
        if self._ray_started:
            stop_ray(self.request.experiment if self.request.local else None)

    def fit(self, experiment: TuneExperiment) -> bool:
        """Run or resume one Tune experiment. True when it ran to its end (failed trials are
        named in one line and counted); False when it was stopped (its line printed,
        exit_code set): the caller then stops too."""
        if self.stop.interrupted:  # during start-up or between two fits
            self.exit_code = self.stop.stopped_exit_code(experiment.path, self.request.local) or 0
            return False
        resources = self._start()
        if self.request.local:  # a state a storage failure cut short is set aside, and said
            note = check_before_resuming(experiment.path)
            if note is not None:
                print(note)
        restoring = experiment.location.started()
        apply_tune_settings(self.request.local, restoring)
        progress.current().configure(
            verbose=self.request.verbose,
            name_keys=experiment.parameter_columns,
            epochs_of=experiment.epochs_of,
            status_columns=experiment.status_columns,
        )
        wandb_dir = Path(self.request.experiment) if self.request.local else None
        trainable = tune.with_resources(
            tune.with_parameters(
                experiment.trainable,
                data=self.data,
                wandb_kwargs=wandb_init_kwargs(self.request.wandb, wandb_dir),
                checkpoint_every=self.request.checkpoint_every,
                **experiment.trainable_kwargs,
            ),
            resources,
        )
        if restoring:
            print(f"resuming {experiment.label}")
            if self.request.local:
                for line in trim_unsaved_rows(experiment.path):
                    print(line)
            try:
                tuner = tune.Tuner.restore(
                    experiment.path, trainable=trainable, resume_errored=True
                )
            except ValueError as exc:  # Tune stores the trial function's name and checks it
                if "Invalid `trainable`" not in str(exc):
                    raise
                raise UserError(
                    f"{experiment.path}: made by a tune_cilp whose trial function had another "
                    "name (train_cilp before the fusion wing); finish it with that version, or "
                    "start a new --name"
                ) from None
        else:
            print(f"starting {experiment.label}")
            tuner = new_tuner(trainable, experiment, self.request, [self.stop])
        results = None
        if not self.stop.interrupted:
            try:
                results = tuner.fit()
            except Exception as exc:  # Tune's own writes failing, or reading what they left
                self.stop.note(exc)
                if self.stop.storage_error is None:
                    raise
        code = self.stop.stopped_exit_code(experiment.path, self.request.local)
        if code is not None:
            self.exit_code = code
            return False
        if results.num_errors or results.num_terminated < len(results):
            self.all_completed = False
        if results.num_errors:
            self.exit_code = 1
            print(
                f"error: {experiment.label}: {results.num_errors} trial(s) failed (see error.txt "
                "in their directories); re-run the same command to retry",
                file=sys.stderr,
            )
        return True


def new_tuner(
    trainable: Any, experiment: TuneExperiment, request: RunRequest, callbacks: list[Any]
) -> tune.Tuner:
    """A Tuner for a new experiment: its scheduler and searcher, checkpoints, callbacks."""
    return tune.Tuner(
        trainable,
        param_space=experiment.params,
        tune_config=tune.TuneConfig(
            metric=experiment.metric,
            mode=experiment.mode,
            num_samples=experiment.num_samples,
            scheduler=experiment.scheduler,
            search_alg=experiment.search_alg,
            reuse_actors=True,
            trial_dirname_creator=experiment.trial_dirname_creator,
        ),
        run_config=tune.RunConfig(
            name=experiment.location.name,
            storage_path=experiment.location.parent,
            callbacks=[*callbacks, *result_loggers(request.tensorboard)],
            failure_config=tune.FailureConfig(max_failures=request.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_TO_KEEP),
            verbose=1,  # the progress lines only; every result is in the experiment directory
            progress_reporter=progress.current(),
        ),
    )


def trial_resources(request: RunRequest, costs: list[float]) -> dict[str, float]:
    """CPUs and GPU fraction per trial, checked against the cluster (a trial that cannot fit
    would wait forever). Without GPUs and without --cpus-per-trial, the CPU plan decides from
    the trials' relative `costs`."""
    cluster = ray.cluster_resources()
    gpus = request.gpus_per_trial
    if gpus is None:
        gpus = DEFAULT_GPU_FRACTION if cluster.get("GPU", 0) > 0 else 0.0
    if gpus > cluster.get("GPU", 0):
        raise UserError(f"--gpus-per-trial: {gpus:g} requested but the Ray cluster has no GPU")
    cpus = request.cpus_per_trial
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


@contextmanager
def _session(request: RunRequest, data: CilpArrays, costs: list[float]) -> Iterator[Session]:
    stop = graceful_stop.fresh()
    session = Session(request, data, stop, costs)
    # From before ray.init (a Ctrl-C during start-up is not lost) until after ray.shutdown()
    # (Ray logs late errors then).
    with stop.installed():
        try:
            yield session
        finally:
            session.shutdown()


def drive(
    request: RunRequest,
    meta: ExperimentMeta,
    data: CilpArrays,
    *,
    started: bool,
    costs: list[float],
    body: Callable[[Session], bool],
) -> Outcome:
    """Run or resume the experiment of `request` (see the module docstring).

    started: whether Tune has begun this experiment (its state is on storage).
    costs: the trials' relative costs for the CPU plan.
    body: the run's fits; True when every one ran to its end (e.g. a chain that stopped
    after a failed stage returns False). Checks it makes before its first fit run before Ray
    starts.
    """
    experiment = request.experiment
    print(f"experiment: {experiment}")
    try:
        # Other settings are refused for that, before the lock: a rerun that could never run is
        # told why, even while another driver holds the experiment. tune_cilp.json is written
        # whole (atomic rename, or one object), so reading it unlocked sees an old or a new one.
        before = read_meta(experiment)
        if before is not None:
            check_same(experiment, before, meta)
        with hold_experiment(experiment, request.local):
            stored = read_meta(experiment)  # again: a driver may have made it since
            if stored is not None:
                check_same(experiment, stored, meta)
                meta = stored
            elif started:
                raise UserError(
                    f"{experiment}: a Ray Tune experiment without {META_FILE} (not made by "
                    "python -m tune_cilp.run); use a new --name for a new experiment"
                )
            if started and meta.finished_at:
                return Outcome(experiment, 0, complete=True, finished_before=meta.finished_at)
            if stored is None:
                write_meta(experiment, meta)
            with _session(request, data, costs) as session:
                complete = body(session)
            complete = complete and session.exit_code in (0, 1)
            if complete and session.all_completed:
                meta.finished_at = now()
                write_meta(experiment, meta)
            return Outcome(experiment, session.exit_code, complete=complete)
    except KeyboardInterrupt:  # before our handler is in (start-up), or a second Ctrl-C
        print(INTERRUPTED, file=sys.stderr)  # nothing is half-written: every write is atomic
        return Outcome(experiment, 130, complete=False)
