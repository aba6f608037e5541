"""Small helpers of the data layer: one-line error messages and progress bars."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm


def one_line(exc: BaseException, path: Path | None = None) -> str:
    """An exception's message on one line (without `path`, which the caller names already)."""
    text = " ".join(str(exc).split())
    if path is not None:
        text = text.replace(f" {str(path)!r}", "").replace(str(path), "file")
    return text or type(exc).__name__


def progress_bar(items: Iterable, desc: str, progress: bool) -> tqdm:
    """tqdm over items; only on a terminal, so piped stderr keeps its one-line errors."""
    return tqdm(items, desc=desc, disable=None if progress else True)
