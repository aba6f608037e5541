"""The race's decisions (analysis/race.py) on scripted per-seed scores, no training.

Most trials here score every scene with probability exp(-loss) on its own class, so the trial's
validation loss is exactly `loss` and no scene differs from another of its class: the scenes add
no variance and a pair's test is Welch's t on the per-seed losses with the ranking's floor (a
side whose own seed variance is below the pooled one takes it, and its df). No loss repeats
within a variant: bit-identical scores are one run counted once (analysis.inference).
`floor_welch` writes that out with numpy and scipy.stats.t, not with the code under test, and
each case asserts its premise (where a test at alpha without the spending over looks, or Holm
over the survivors alone, would have decided otherwise). The error rates over many races:
benchmarks/bench_calibration.py."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats

from analysis.race import (
    EQUIVALENT,
    MAX_SEEDS_REACHED,
    ONE_LEFT,
    RUNNING,
    RaceDesign,
    SeedScores,
    decide,
)
from tune_cilp.core.errors import UserError

LABELS = np.array([0] * 30 + [1] * 5)
FIRST = RaceDesign(("a", "b")).first_seed
ALPHA = 0.05
LEVEL = ALPHA / 8  # the default design: looks at 3, 4, ..., 10 seeds


def trials(losses: list[float], first: int = FIRST) -> list[SeedScores]:
    """Seeds first, first + 1, ...: the trial of seed first + i has validation loss losses[i]."""
    out = []
    for i, loss in enumerate(losses):
        right = math.exp(-loss)
        out.append(SeedScores(first + i, np.where(LABELS == 1, right, 1 - right)))
    return out


def floor_welch(a: list[float], b: list[float]) -> tuple[float, float, float, float]:
    """(b - a, its standard error, Satterthwaite df, two-sided p) of the per-seed losses, each
    side's variance floored at the two sides' pooled variance (with its 2 (k - 1) df)."""
    a_, b_ = np.asarray(a), np.asarray(b)
    k = len(a_)
    own = [float(np.var(x, ddof=1)) for x in (a_, b_)]
    pooled = sum(own) / 2
    parts = [(pooled, 2 * (k - 1)) if pooled > v else (v, k - 1) for v in own]
    var = sum(v / k for v, _ in parts)
    df = var**2 / sum((v / k) ** 2 / d for v, d in parts)
    diff = float(b_.mean() - a_.mean())
    se = math.sqrt(var)
    return diff, se, df, float(2 * stats.t.sf(abs(diff) / se, df))


def test_a_clear_loser_goes_at_the_first_look_the_spending_allows() -> None:
    a = [0.100, 0.130, 0.110, 0.120, 0.101, 0.121, 0.111, 0.131, 0.102, 0.122]
    b = [0.160, 0.210, 0.150, 0.190, 0.200, 0.180, 0.170, 0.191, 0.161, 0.181]
    p = {n: floor_welch(a[:n], b[:n])[3] for n in (3, 4, 5)}
    # premise: at 4 seeds a test at alpha would eliminate b; only at 5 is p below alpha / 8
    assert p[3] > ALPHA and LEVEL < p[4] < ALPHA and p[5] < LEVEL
    design = RaceDesign(("a", "b"))
    assert (design.looks, design.look_alpha) == (8, LEVEL)
    state = decide(design, LABELS, {"a": trials(a), "b": trials(b)})
    assert [look.seeds for look in state.looks] == [3, 4, 5]
    assert [look.eliminated for look in state.looks[:2]] == [(), ()]
    (gone,) = state.looks[2].eliminated
    assert (gone.variant, gone.lost_to, gone.level) == ("b", "a", LEVEL)
    assert gone.difference == pytest.approx(np.mean(b[:5]) - np.mean(a[:5]))
    assert gone.p_holm == pytest.approx(p[5], rel=1e-6)  # one pair: Holm leaves p as it is
    assert gone.reason == f"b: worse than a by +0.0698 (Holm p = {p[5]:.2g} < 0.00625)"
    assert (state.outcome, state.winner, state.survivors, state.next_trials) == (
        ONE_LEFT, "a", ("a",), ()
    )  # fmt: skip
    assert state.seeds_used == {"a": 5, "b": 5}
    assert state.confidence_set == ("a",)


def test_equal_variants_are_not_eliminated_where_an_unspent_alpha_would_do_it() -> None:
    a = [0.10, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18, 0.19]
    b = [0.13, 0.15, 0.14, 0.17, 0.10, 0.19, 0.18, 0.16, 0.11, 0.12]  # the same ten losses
    p = [floor_welch(a[:n], b[:n])[3] for n in range(3, 11)]
    assert min(p) < ALPHA and min(p) > LEVEL  # premise: alpha at every look would eliminate
    state = decide(RaceDesign(("a", "b")), LABELS, {"a": trials(a), "b": trials(b)})
    assert [look.seeds for look in state.looks] == list(range(3, 11))
    assert all(look.eliminated == () for look in state.looks)
    assert (state.outcome, set(state.survivors), state.next_trials) == (
        MAX_SEEDS_REACHED, {"a", "b"}, ()
    )  # fmt: skip
    assert state.seeds_used == {"a": 10, "b": 10}


def test_equivalence_within_the_margin_by_two_one_sided_tests_at_the_look_level() -> None:
    a = [0.100, 0.104, 0.101]
    b = [0.102, 0.103, 0.105]
    diff, se, df, _ = floor_welch(a, b)
    reach = abs(diff) + stats.t.ppf(1 - LEVEL, df) * se  # the farthest the difference may be
    results = {"a": trials(a), "b": trials(b)}
    inside = decide(RaceDesign(("a", "b"), margin=1.1 * reach), LABELS, results)
    assert (inside.outcome, set(inside.survivors), inside.next_trials) == (
        EQUIVALENT, {"a", "b"}, ()
    )  # fmt: skip
    assert inside.looks[0].equivalent and inside.looks[0].eliminated == ()
    # a margin just inside the reach: not shown, so both get a fourth seed
    short = decide(RaceDesign(("a", "b"), margin=0.9 * reach), LABELS, results)
    assert (short.outcome, short.looks[0].equivalent) == (RUNNING, False)
    assert set(short.next_trials) == {("a", FIRST + 3), ("b", FIRST + 3)}
    # and at the unspent alpha the shorter margin would have passed
    assert abs(diff) + stats.t.ppf(1 - ALPHA, df) * se < 0.9 * reach


def test_max_seeds_reached_ends_the_race_with_every_survivor() -> None:
    a = [0.10, 0.12, 0.11, 0.13]
    b = [0.11, 0.12, 0.10, 0.13]
    design = RaceDesign(("a", "b"), max_seeds=4)
    assert (design.looks, design.look_alpha) == (2, ALPHA / 2)
    state = decide(design, LABELS, {"a": trials(a), "b": trials(b)})
    assert [(look.seeds, look.outcome) for look in state.looks] == [
        (3, RUNNING), (4, MAX_SEEDS_REACHED)
    ]  # fmt: skip
    assert (state.outcome, set(state.survivors), state.next_trials) == (
        MAX_SEEDS_REACHED, {"a", "b"}, ()
    )  # fmt: skip


def three_variants() -> dict[str, list[SeedScores]]:
    """a and b close, c far worse; all ten seeds finished."""
    return {
        "a": trials([0.100, 0.120, 0.110, 0.130, 0.101, 0.121, 0.111, 0.131, 0.102, 0.122]),
        "b": trials([0.110, 0.120, 0.130, 0.111, 0.121, 0.100, 0.140, 0.112, 0.122, 0.132]),
        "c": trials([0.500, 0.530, 0.510, 0.520, 0.501, 0.531, 0.511, 0.521, 0.502, 0.532]),
    }


def test_next_trials_are_the_survivors_missing_ones_for_the_next_look() -> None:
    design = RaceDesign(("a", "b", "c"))
    start = decide(design, LABELS, {})
    assert (start.outcome, start.looks) == (RUNNING, ())
    assert start.next_trials == tuple((v, FIRST + i) for v in "abc" for i in range(3))
    full = three_variants()
    some = {"a": full["a"][:3], "b": full["b"][:1], "c": full["c"][:2]}
    assert decide(design, LABELS, some).next_trials == (
        ("b", FIRST + 1), ("b", FIRST + 2), ("c", FIRST + 2)
    )  # fmt: skip
    first_look = {v: full[v][:3] for v in full}
    state = decide(design, LABELS, first_look)
    (look,) = state.looks
    assert [e.variant for e in look.eliminated] == ["c"] and look.eliminated[0].lost_to == "a"
    assert look.eliminated[0].p_holm < LEVEL
    assert (state.outcome, state.survivors) == (RUNNING, ("a", "b"))
    assert state.next_trials == (("a", FIRST + 3), ("b", FIRST + 3))  # none for c
    one_more = decide(design, LABELS, {**first_look, "a": full["a"][:4]})
    assert one_more.looks == state.looks and one_more.next_trials == (("b", FIRST + 3),)


def test_the_pairs_of_an_eliminated_variant_still_count_in_later_looks() -> None:
    """After c goes, a and b are one pair, but Holm counts the two pairs each has with c too
    (never rejected): three, so a truly best variant's pairs weigh the same whatever went."""
    a = [0.100, 0.120, 0.110, 0.130, 0.101, 0.121, 0.111, 0.131, 0.102, 0.122]
    b = [0.140, 0.160, 0.130, 0.170, 0.151, 0.161, 0.141, 0.171, 0.152, 0.162]
    c = [0.500, 0.530, 0.510, 0.520, 0.501, 0.531, 0.511, 0.521, 0.502, 0.532]
    p = {n: floor_welch(a[:n], b[:n])[3] for n in (5, 6)}
    # premise: Holm over the survivors' one pair would eliminate b at 5 seeds
    assert LEVEL / 3 < p[5] < LEVEL and p[6] < LEVEL / 3
    results = {"a": trials(a), "b": trials(b), "c": trials(c)}
    state = decide(RaceDesign(("a", "b", "c")), LABELS, results)
    assert [[e.variant for e in look.eliminated] for look in state.looks] == [["c"], [], [], ["b"]]
    gone = state.looks[3].eliminated[0]
    assert (state.looks[3].seeds, gone.lost_to, state.winner) == (6, "a", "a")
    assert gone.p_holm == pytest.approx(3 * p[6], rel=1e-6)
    assert state.looks[2].comparison.p_holm[("a", "b")] == pytest.approx(3 * p[5], rel=1e-6)


def test_a_state_is_recomputed_identically_from_more_or_reordered_trials() -> None:
    """Each look uses exactly its seeds: trials that finished beyond it (c's after it was out,
    the next look's first arrivals) and the order results arrive in change nothing."""
    design = RaceDesign(("a", "b", "c"))
    full = three_variants()
    needed = {v: full[v][:3] for v in full}
    state = decide(design, LABELS, needed)
    extra = {"a": full["a"][:4], "b": full["b"][:3], "c": full["c"]}
    again = decide(design, LABELS, extra)
    assert again.looks == state.looks and again.survivors == state.survivors
    shuffled = {v: random.Random(7).sample(full[v], len(full[v])) for v in ("c", "b", "a")}
    done = decide(design, LABELS, full)
    assert decide(design, LABELS, shuffled) == done
    assert done.looks[0] == state.looks[0]  # the resumed race keeps every past decision
    assert done.outcome != RUNNING and done.seeds_used["c"] == 3


def test_a_metric_to_maximise_eliminates_the_lower_one() -> None:
    labels = np.array([0] * 120 + [1] * 20)
    cubes = labels == 0
    results: dict[str, list[SeedScores]] = {"right": [], "wrong": []}
    for i in range(3):
        seed = FIRST + i
        results["right"].append(SeedScores(seed, np.where(cubes, 0.10 + 0.01 * i, 0.9)))
        wrong = np.where(cubes, 0.1, 0.9)
        wrong[: 60 + 5 * i] = 0.8  # 60-70 of the 120 cubes called spheres
        results["wrong"].append(SeedScores(seed, wrong))
    state = decide(RaceDesign(("wrong", "right"), metric="val_accuracy"), labels, results)
    (gone,) = state.looks[0].eliminated
    assert (gone.variant, gone.lost_to, state.winner) == ("wrong", "right", "right")
    assert gone.difference == pytest.approx(-65 / 140)  # its accuracy minus the winner's


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"variants": ("a",)}, "--race compares variants: the space has 1"),
        ({"variants": ("a", "a")}, "variant names repeat"),
        ({"max_seeds": 2}, "--max-seeds 2 is below the 3 seeds"),
        ({"alpha": 0.0}, "--alpha 0 is not in (0, 1)"),
        ({"alpha": 1.0}, "--alpha 1 is not in (0, 1)"),
        ({"alpha": math.nan}, "--alpha nan is not in (0, 1)"),
        ({"margin": -0.01}, "--margin -0.01 is not a positive number"),
        ({"margin": 0.0}, "--margin 0 is not a positive number"),
        ({"metric": "params_m"}, "not params_m"),
        ({"metric": "val_nothing"}, "not val_nothing"),
        ({"n0": 1}, "2 or more seeds"),
    ],
)
def test_a_design_that_cannot_run_is_refused_in_one_line(fields: dict, says: str) -> None:
    with pytest.raises(UserError) as refused:
        RaceDesign(**{"variants": ("a", "b"), **fields})
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_results_it_cannot_place_are_a_programming_error() -> None:
    design = RaceDesign(("a", "b"))
    with pytest.raises(ValueError, match="not in the race: z"):
        decide(design, LABELS, {"z": trials([0.1])})
    with pytest.raises(ValueError, match=f"a seed {FIRST} is reported twice"):
        decide(design, LABELS, {"a": trials([0.1]) + trials([0.2])})
