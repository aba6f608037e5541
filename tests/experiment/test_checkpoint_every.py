"""When a trial's report carries a checkpoint (tune_cilp/experiment/trial.py, --checkpoint-every):
every N epochs and the last, every epoch by default."""

from __future__ import annotations

import pytest

from tune_cilp.core.errors import UserError
from tune_cilp.experiment.trial import checkpoint_due
from tune_cilp.run_args import build_parser, parse_request


def checkpointed(every: int | None, epochs: int) -> list[int]:
    return [e for e in range(1, epochs + 1) if checkpoint_due(e, e == epochs, every)]


def test_every_n_epochs_and_the_last() -> None:
    assert checkpointed(2, 5) == [2, 4, 5]
    assert checkpointed(1, 3) == [1, 2, 3]
    assert checkpointed(10, 3) == [3]
    assert checkpointed(None, 3) == [1, 2, 3]  # the default


def test_checkpoint_every_is_checked() -> None:
    argv = ["--checkpoint-every", "0"]
    with pytest.raises(UserError, match="^--checkpoint-every: must be at least 1, got 0$"):
        parse_request(build_parser().parse_args(argv), argv, 0.0)
    argv = ["--checkpoint-every", "3"]
    assert parse_request(build_parser().parse_args(argv), argv, 0.0).checkpoint_every == 3
