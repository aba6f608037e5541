"""How many CPU threads each trial gets when the run has no GPU: the choice that makes the whole
experiment finish soonest, decided before any trial starts.

The trade-off: a trial's epoch gets faster with more threads, but not in proportion (measured
on 2 Zen 4 cores: 1.8x from 1 to 2 threads, benchmarks/bench_threads.py), while trials side by
side on one thread each use every core fully -- until the shorter ones end and cores idle (the
seed ablation's maxpool trial costs 3x its strided twin). So for each thread count T that fits
on the nodes, the plan simulates the schedule -- trials longest first on (CPUs // T) slots,
each trial's cost its analytic FLOPs x epochs, divided by the speed-up of T threads -- and
takes the T with the shortest predicted makespan (the larger T on a tie: fewer trials at once
hold less memory). The inputs are the experiment's configurations and the nodes' CPU counts,
never a timing, so the same command on the same machine gets the same threads, and the same
numbers (a trial's result can depend on its thread count).

Speed-up beyond the measured 2 threads follows Amdahl's law fitted to that measurement: the
parallel fraction p solves 1.8 = 1 / ((1 - p) + p / 2), so p = 8/9 and 4, 8 and 16 threads give
3.0x, 4.5x and 6.0x. On a 16-core node the plan therefore runs the ten fusion trials on 1-2
threads each rather than one at a time on all 16.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

TWO_THREAD_SPEEDUP = 1.8  # measured: benchmarks/bench_threads.py, concat-maxpool bf16 epoch
PARALLEL_FRACTION = 2 * (1 - 1 / TWO_THREAD_SPEEDUP)  # Amdahl's p from the 2-thread speed-up


def speedup(threads: int) -> float:
    """The predicted speed-up of one trial on `threads` threads over one thread."""
    return 1.0 / ((1 - PARALLEL_FRACTION) + PARALLEL_FRACTION / threads)


def makespan(costs: Sequence[float], slots: int) -> float:
    """Longest-first list schedule of `costs` on `slots` equal workers: when the last ends."""
    finish = [0.0] * max(slots, 1)
    for cost in sorted(costs, reverse=True):
        heapq.heapreplace(finish, finish[0] + cost)  # onto the worker that is free first
    return max(finish)


@dataclass(frozen=True)
class CpuPlan:
    """Threads per trial, trials at once, and the predicted makespans that chose them."""

    threads: int
    concurrent: int
    predicted: dict[int, float]  # threads -> predicted makespan (in one-thread cost units)

    def describe(self, trials: int) -> str:
        """One line: the choice and how much longer the alternatives were predicted to take."""
        best = self.predicted[self.threads]
        shown = sorted({1, self.threads, max(self.predicted)})
        others = ", ".join(f"{t} thread(s) {self.predicted[t] / best:.2f}x" for t in shown)
        return (
            f"CPU plan: {trials} trial(s), {self.threads} thread(s) each, {self.concurrent} at a "
            f"time (predicted makespan relative to it: {others})"
        )


def plan(costs: Sequence[float], node_cpus: Sequence[int]) -> CpuPlan:
    """The thread count per trial with the shortest predicted makespan on these nodes (a trial
    runs on one node, so at most the smallest node's CPUs)."""
    largest = max(1, min(int(c) for c in node_cpus))
    predicted = {}
    for threads in range(1, largest + 1):
        slots = sum(int(c) // threads for c in node_cpus)
        predicted[threads] = makespan([c / speedup(threads) for c in costs], slots)
    best = min(predicted, key=lambda t: (round(predicted[t], 9), -t))
    slots = sum(int(c) // best for c in node_cpus)
    return CpuPlan(best, min(slots, len(costs)), predicted)
