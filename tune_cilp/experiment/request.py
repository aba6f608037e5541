"""What one ``python -m tune_cilp.run`` asks for, parsed and checked once by the command
(tune_cilp/run_args.py) and read, never changed, by every driver below it."""

from __future__ import annotations

from dataclasses import dataclass

from tune_cilp.experiment.storage import Location
from tune_cilp.experiment.wandb_setup import WandbSettings


@dataclass(frozen=True)
class RunRequest:
    """A validated run: what to run, on what data, where, with which resources.

    None means "the space's (or the tool's) default" wherever a field allows it; the drivers
    resolve those defaults, each in one place.
    """

    # What to run
    space: str  # the space's name ("replicate" for --replicate)
    epochs: int | None
    seeds: tuple[int, ...] | None
    num_samples: int | None
    precision: str | None
    smoke_test: bool
    replicate: str | None  # the source experiment (absolute path or URI)
    top_k: int | None
    lidar_cnn: str | None  # absolute path of NVIDIA's LiDAR CNN state dict
    race: bool  # seeds raced until the answer is decided (--race, --max-seeds, --alpha, --margin)
    max_seeds: int | None
    pack: int | None  # seeds per trial (--pack), None: one
    alpha: float | None
    margin: float | None
    # On what data
    dataset: str
    data_dir: str | None
    test_fraction: float | None  # share of the validation scenes held out as a test split
    # Where
    location: Location  # <--storage-path>/<--name>: an absolute local path or a URI, checked
    address: str | None
    # With which resources and services
    cpus_per_trial: int | None
    gpus_per_trial: float | None
    max_failures: int
    checkpoint_every: int | None  # epochs between checkpoints; None: the trial decides
    wandb: WandbSettings  # resolved: flag > WANDB_* environment > default
    tensorboard: bool
    verbose: bool  # Ray's status table instead of the progress lines
    argv: tuple[str, ...]  # as typed, recorded in tune_cilp.json
    started_at: float  # time.time() when the command started (for "setup took")

    @property
    def experiment(self) -> str:
        """The experiment's directory (or URI): <storage>/<name>."""
        return self.location.path

    @property
    def local(self) -> bool:
        return self.location.local

    @property
    def seed_list(self) -> list[int] | None:
        return None if self.seeds is None else list(self.seeds)
