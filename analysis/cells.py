"""Table cells: a value with its interval, a spread across seeds, a paired difference, a p-value.

A cell may hold two lines (value, then its interval): formats that can draw them (grid, simple,
...) keep both, the others (github, latex, ...) get one line. One place for every number's look,
so all tables agree.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np

from analysis.bootstrap import CONSTANT
from analysis.inference import Difference, Interval

NAME_WIDTH = 20  # a variant name wraps at spaces beyond this (ranking tables)
# tabulate formats that draw a two-line cell as two lines of one row
MULTILINE_FORMATS = frozenset(
    {"plain", "simple", "grid", "simple_grid", "rounded_grid", "heavy_grid", "mixed_grid",
     "double_grid", "fancy_grid", "outline", "simple_outline", "rounded_outline",
     "heavy_outline", "mixed_outline", "double_outline", "fancy_outline", "psql", "pretty",
     "presto", "rst"}
)  # fmt: skip


def fmt_value(value: float | None, spec: str) -> str:
    """`value` in `spec`, or "n/a" for a missing one."""
    return "n/a" if value is None or math.isnan(value) else format(value, spec)


def estimate_cell(
    e: Interval, spec: str, bounds: tuple[float, float] = (-math.inf, math.inf)
) -> str:
    """ "0.912\n[0.853, 0.967]"; at a bound of the metric's range the interval reads from the
    other side only: "1.000\n[>= 0.980]" (a perfect score is a lower bound on the truth, never a
    bare 1.000); "n/a" without a value, the value alone when there is no interval."""
    value = fmt_value(e.value, spec)
    if math.isnan(e.value) or not e.has_interval:
        return value
    b = _bound_spec(spec)
    low, high = format(e.low, b), format(e.high, b)
    if e.high >= bounds[1] and e.value >= bounds[1]:
        return f"{value}\n[>= {low}]"
    if e.low <= bounds[0] and e.value <= bounds[0]:
        return f"{value}\n[<= {high}]"
    return f"{value}\n[{low}, {high}]"


def _bound_spec(spec: str) -> str:
    """A "g" spec one significant digit shorter: the bounds of an interval carry less than its
    value, and the shorter bounds keep the tables within 120 columns."""
    if spec.endswith("g") and spec[-2:-1].isdigit() and int(spec[-2]) > 2:
        return spec[:-2] + str(int(spec[-2]) - 1) + "g"
    return spec


def paired_cell(d: Difference | None, spec: str) -> str:
    """b - a and its interval ("" when there is no comparison, the difference alone when it
    cannot be tested)."""
    if d is None:
        return ""
    value = fmt_value(d.difference, "+" + spec)
    if not math.isfinite(d.low):
        return value
    b = "+" + _bound_spec(spec)
    return f"{value}\n[{format(d.low, b)}, {format(d.high, b)}]"


def spread_cell(values: Sequence[float], spec: str) -> str:
    """Across seeds: "mean\\n(min–max)"; one value, or seeds that agree: the value alone."""
    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return "n/a"
    mean = format(float(arr.mean()), spec)
    if arr.size == 1 or np.ptp(arr) < CONSTANT * max(1.0, abs(float(arr.mean()))):
        return mean
    return f"{mean}\n({format(float(arr.min()), spec)}–{format(float(arr.max()), spec)})"


P_FLOOR = 0.001  # below it a p-value reads "< 0.001": its digits there mean nothing


def p_cell(p: float | None) -> str:
    """A p-value in two significant digits, "< 0.001" below that, "n/a" when there is none."""
    if p is None or math.isnan(p):
        return "n/a"
    return f"< {P_FLOOR:g}" if p < P_FLOOR else f"{p:.2g}"


def sig(value: float, digits: int = 2, sign: bool = True) -> str:
    """`value` in `digits` significant digits (verdicts claim no more)."""
    return "n/a" if math.isnan(value) else format(value, ("+" if sign else "") + f".{digits}g")


def name_cell(name: str) -> str:
    """A variant name wrapped at spaces (never inside "concat-maxpool"); a "key=value" longer
    than a line breaks after its "="."""
    pieces = []
    for token in name.split(" "):
        if len(token) > NAME_WIDTH and "=" in token:
            key, value = token.split("=", 1)
            pieces += [key + "=", value]
        else:
            pieces.append(token)
    return textwrap.fill(" ".join(pieces), NAME_WIDTH, break_on_hyphens=False)


def for_format(rows: list[list[str]], fmt: str) -> list[list[str]]:
    """`rows` with two-line cells joined into one line where `fmt` cannot draw them."""
    if fmt in MULTILINE_FORMATS:
        return rows
    # name_cell breaks a long "key=value" after its "=": joined back without a space
    return [[cell.replace("=\n", "=").replace("\n", " ") for cell in row] for row in rows]
