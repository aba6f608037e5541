"""The CPU plan: threads per trial from the experiment and the machine, never from timings."""

from __future__ import annotations

import pytest

from tune_cilp.experiment.cpu_plan import makespan, plan, speedup
from tune_cilp.fusion.fusion_driver import param_space, trial_costs
from tune_cilp.spaces import get_space


def test_speedup_is_the_measured_one_at_two_threads_and_amdahl_beyond() -> None:
    assert speedup(1) == pytest.approx(1.0) and speedup(2) == pytest.approx(1.8)
    assert [round(speedup(t), 2) for t in (4, 8, 16)] == [3.0, 4.5, 6.0]


def test_makespan_is_a_longest_first_list_schedule() -> None:
    assert makespan([3, 1], 2) == 3  # the long trial alone decides
    assert makespan([3, 1], 1) == 4
    assert makespan([2, 2, 1, 1, 1, 1], 2) == 4  # 2+1+1 on each worker


def test_uneven_pair_on_two_cores_runs_one_trial_at_a_time_on_both() -> None:
    # The seed ablation: maxpool costs 3x stride. Side by side: 3 units; one after the other
    # on 2 threads: (3 + 1) / 1.8 = 2.22 units.
    chosen = plan([3.0, 1.0], [2])
    assert (chosen.threads, chosen.concurrent) == (2, 1)
    assert chosen.predicted[1] == pytest.approx(3.0)
    assert chosen.predicted[2] == pytest.approx(4 / 1.8)


def test_many_even_trials_on_two_cores_run_side_by_side() -> None:
    chosen = plan([1.0] * 10, [2])
    assert (chosen.threads, chosen.concurrent) == (1, 2)


def test_a_trial_never_spans_nodes() -> None:
    chosen = plan([1.0, 1.0], [4, 2])
    assert chosen.threads <= 2 and max(chosen.predicted) == 2


def test_real_spaces_get_the_same_plan_every_time() -> None:
    ablation = trial_costs(param_space(get_space("seed-ablation"), 10, None), 1)
    assert len(ablation) == 2 and ablation[0] / ablation[1] == pytest.approx(3.0, rel=0.05)
    assert plan(ablation, [2]).threads == 2
    fusion = trial_costs(param_space(get_space("fusion"), 10, [51, 52]), 1)
    assert len(fusion) == 20 and plan(fusion, [2]).threads == 1
    assert plan(fusion, [2]) == plan(list(fusion), [2])  # a pure function of its inputs
    assert trial_costs(param_space(get_space("hpo"), 10, None), 8) == [1.0] * 8  # unknown yet
