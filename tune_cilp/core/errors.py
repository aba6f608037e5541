"""One error type for bad user input, the wrapper that turns it into a one-line exit, and the
argument parser every command shares (defaults and an epilog of exit codes in its --help)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

EXIT_STORAGE = 1
EXIT_USAGE = 2


class UserError(Exception):
    """Bad input the user can fix (missing path, wrong shape, unknown name, bad value).

    Command-line entry points print it as a single ``error: ...`` line and exit with code 2.
    """


class StorageError(UserError):
    """A write the input was fine for failed on the storage (disk full, quota, I/O error):
    one ``error: ...`` line and exit code 1, with nothing half-written."""


EXIT_CODES = {
    0: "done",
    EXIT_STORAGE: "a write failed on the storage, e.g. a full disk (one `error:` line)",
    EXIT_USAGE: "bad input (one `error:` line)",
    130: "interrupted (Ctrl-C)",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help with each option's default (where it has one its help does not already state),
    and description and epilog as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" not in text
            and action.default is not None
            and action.default is not False  # a flag's (0 is a default to show)
            and action.default != argparse.SUPPRESS
            and (
                action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)
            )
        ):
            text += " (default: %(default)s)"
        return text


def epilog(codes: dict[int, str], variables: dict[str, str]) -> str:
    """The --help epilog: the exit codes and the environment variables a command reads."""
    lines = ["exit codes:", *(f"  {code:<4} {what}" for code, what in sorted(codes.items()))]
    if variables:
        lines += ["", "environment:", *(f"  {name:<22} {what}" for name, what in variables.items())]
    return "\n".join(lines)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument raises UserError (one line) instead of printing usage, and
    --help shows the defaults (HelpFormatter)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> None:
    """Run a command-line ``main`` and exit: 0 or its code, 1 on StorageError, 2 on another
    UserError, 130 on Ctrl-C."""
    try:
        code = main(argv)
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_STORAGE)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # `... | head` closed the pipe: stop quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's exit flush would fail again
        sys.exit(1)
    sys.exit(code or 0)
