"""A pickle payload for the safe-loading tests: what a malicious checkpoint would carry."""

from __future__ import annotations

import os
from pathlib import Path


class MkdirOnLoad:
    """Pickles to a call of os.mkdir: loading it unsafely would create a directory."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.path,))
