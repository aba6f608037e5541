"""The places a local Ray writes, checked before it starts: a bad one is one line, not Ray's
traceback of 40-odd lines from inside ray.init.

- Its temp dir (RAY_TMPDIR, else TMPDIR, else /tmp, as Ray chooses it): a writable folder, short
  enough for the Unix sockets Ray makes inside it (107 bytes at most, with Ray's own names).
- ~/.ray, where Ray (>= 2.59) saves the auth token of a cluster it starts. Where HOME is not
  writable, the token of this run's Ray is kept in the driver's environment (RAY_AUTH_TOKEN),
  which the Ray processes it starts inherit, and one line says so.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from tune_cilp.core.errors import UserError
from tune_cilp.core.path_guard import can_write_in, check_place

SOCKET_MAX = 107  # bytes of an AF_UNIX path (Ray checks the same)
# The longest socket path Ray makes under its temp dir (a 7-digit pid at the end of the session).
SOCKET_TAIL = "/ray/session_2026-01-01_00-00-00_000000_4194304/sockets/plasma_store"
TOKEN_VARIABLES = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def ray_temp_root() -> tuple[str, str]:
    """(the folder a local Ray puts ray/ in, the variable that chose it) as Ray decides."""
    for variable in ("RAY_TMPDIR", "TMPDIR"):
        if os.environ.get(variable):
            return os.environ[variable], variable
    return "/tmp", "the default /tmp"


def check_temp_dir() -> None:
    """UserError (one line, naming the variable to set) unless Ray can make its temp dir."""
    root, variable = ray_temp_root()
    check_place(root, f"Ray's temp dir ({variable}={root})")  # Ray makes it
    size = len(os.fsencode(os.path.abspath(root) + SOCKET_TAIL))
    if size > SOCKET_MAX:
        raise UserError(
            f"{variable}={root}: too long for Ray's sockets ({size} bytes with Ray's own names; "
            f"at most {SOCKET_MAX}); set RAY_TMPDIR to a shorter folder, e.g. /tmp/ray_$USER"
        )


def keep_token_off_home() -> None:
    """Where Ray would fail to save its auth token under an unwritable HOME, give this run's
    Ray a token in the environment instead (said in one line)."""
    if any(os.environ.get(v) for v in TOKEN_VARIABLES):
        return
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return
    ray_home = Path(os.path.expanduser("~")) / ".ray"
    if (ray_home / "auth_token").is_file() or can_write_in(ray_home):
        return
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(16)
    print(
        f"note: {ray_home} cannot be written (HOME={os.environ.get('HOME', '')}), so the auth "
        "token of the Ray started here lives in this run's environment only; set "
        "RAY_AUTH_TOKEN_PATH to keep one elsewhere",
        file=sys.stderr,
    )


def check_local_ray_places() -> None:
    """Both checks, for a driver about to start a local Ray."""
    check_temp_dir()
    keep_token_off_home()
