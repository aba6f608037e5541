"""One error type for bad user input, and the wrapper that turns it into a one-line exit."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

EXIT_USAGE = 2


class UserError(Exception):
    """Bad input the user can fix (missing path, wrong shape, unknown name, bad value).

    Command-line entry points print it as a single ``error: ...`` line and exit with code 2.
    """


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument raises UserError (one line) instead of printing usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> None:
    """Run a command-line ``main`` and exit: 0 or its code, 2 on UserError, 130 on Ctrl-C."""
    try:
        code = main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
