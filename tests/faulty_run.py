"""``python tests/faulty_run.py ARGS...``: the runner with a trainable whose seed-52 trials raise
before training. How the fault tests make configurations fail: from outside the production
code, through the runner's ``trainable`` argument."""

from __future__ import annotations

from typing import Any

from tune_cilp.core.errors import run_cli
from tune_cilp.fusion.fusion_driver import train_fusion
from tune_cilp.run import main

FAILING_SEED = 52
MESSAGE = f"injected failure: seed {FAILING_SEED}"


def failing_on_seed(config: dict[str, Any], **kwargs: Any) -> None:
    """train_fusion, except that a trial with FAILING_SEED raises before training."""
    if config.get("seed") == FAILING_SEED:
        raise RuntimeError(MESSAGE)
    train_fusion(config, **kwargs)


if __name__ == "__main__":
    run_cli(lambda argv: main(argv, trainable=failing_on_seed))
