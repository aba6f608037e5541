"""When a trial's report carries a checkpoint (tune_cilp/experiment/trial.py, --checkpoint-every):
every N epochs and the last; left to the trial, every epoch where a checkpoint is cheap against
an epoch, else as rarely as keeps it under a tenth of the training time."""

from __future__ import annotations

import pytest

from tune_cilp.core.errors import UserError
from tune_cilp.experiment.trial import CHECKPOINT_SHARE, _Due
from tune_cilp.run_args import build_parser, parse_request


def checkpointed(due: _Due, epochs: int, epoch_s: float, cost: float) -> list[int]:
    out = []
    for epoch in range(1, epochs + 1):
        if due(epoch, epoch == epochs, epoch_s):
            out.append(epoch)
            due.cost = cost
    return out


def test_every_n_epochs_and_the_last() -> None:
    assert checkpointed(_Due(2), 5, 1.0, 0.1) == [2, 4, 5]
    assert checkpointed(_Due(1), 3, 1.0, 0.1) == [1, 2, 3]
    assert checkpointed(_Due(10), 3, 1.0, 0.1) == [3]


def test_left_to_the_trial_it_follows_the_measured_cost() -> None:
    # A CPU: 3 s epochs, 0.15 s checkpoints (benchmarks/README.md): every epoch.
    assert checkpointed(_Due(None), 5, 3.0, 0.15) == [1, 2, 3, 4, 5]
    # Epochs as short as a checkpoint: one every CHECKPOINT_SHARE epochs, and the last.
    found = checkpointed(_Due(None), 25, 0.25, 0.25)
    assert found == [1, 1 + CHECKPOINT_SHARE, 1 + 2 * CHECKPOINT_SHARE, 25]


def test_checkpoint_every_is_checked() -> None:
    argv = ["--checkpoint-every", "0"]
    with pytest.raises(UserError, match="^--checkpoint-every: must be at least 1, got 0$"):
        parse_request(build_parser().parse_args(argv), argv, 0.0)
    argv = ["--checkpoint-every", "3"]
    assert parse_request(build_parser().parse_args(argv), argv, 0.0).checkpoint_every == 3
