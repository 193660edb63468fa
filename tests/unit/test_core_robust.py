"""Robust aggregation rules: median and trimmed mean, per coordinate, and across hospitals."""

from __future__ import annotations

import numpy as np
import pytest

from flcore.errors import EmptyAggregate, InvalidParameter
from flcore.master import PartialSum, combine
from flcore.robust import (
    UpdateStack,
    check_rule,
    coordinate_median,
    robust_mean,
    stack_bytes,
    trim_count,
    trimmed_mean,
)
from flcore.server_opt import ServerOptState, make_server_optimizer

pytestmark = pytest.mark.unit


def _rows(*rows: list[float]) -> np.ndarray:
    return np.asarray(rows, np.float32)


def test_median_odd_count_is_the_middle_value_per_coordinate() -> None:
    got = coordinate_median(_rows([1, 9], [5, -3], [100, 2]))
    np.testing.assert_array_equal(got, [5, 2])


def test_median_even_count_is_the_mean_of_the_two_middle_values() -> None:
    got = coordinate_median(_rows([1, 0], [2, 0], [4, 10], [1000, 10]))
    np.testing.assert_array_equal(got, [3, 5])


def test_median_with_ties_and_a_single_row() -> None:
    np.testing.assert_array_equal(coordinate_median(_rows([7, 7], [7, 1], [2, 7])), [7, 7])
    np.testing.assert_array_equal(coordinate_median(_rows([3, -4])), [3, -4])


def test_median_ignores_a_minority_however_large() -> None:
    honest = np.ones((9, 4), np.float32)
    attacked = np.vstack([honest, np.full((1, 4), -1e30, np.float32)])
    np.testing.assert_array_equal(coordinate_median(attacked), np.ones(4))


def test_trim_count_floors_and_always_keeps_a_value() -> None:
    assert [trim_count(n, 0.1) for n in (1, 9, 10, 30)] == [0, 0, 1, 3]
    assert [trim_count(n, 0.45) for n in (1, 2, 3, 4, 20)] == [0, 0, 1, 1, 9]
    assert trim_count(10, 0.0) == 0


def test_trimmed_mean_drops_k_lowest_and_highest_per_coordinate() -> None:
    stack = _rows([-100, 1], [1, 2], [2, 3], [3, 4], [100, -50])  # k = 1 at 0.2
    np.testing.assert_allclose(trimmed_mean(stack, 0.2), [2, 2])  # col 2: drops -50 and 4


def test_trimmed_mean_with_ties_and_even_count() -> None:
    stack = _rows([5], [5], [5], [1])  # k = 1: drop one 1 and one 5
    np.testing.assert_allclose(trimmed_mean(stack, 0.25), [5])
    np.testing.assert_allclose(trimmed_mean(_rows([1], [2], [3], [10]), 0.25), [2.5])


def test_trimmed_mean_zero_fraction_is_the_plain_mean() -> None:
    np.testing.assert_allclose(trimmed_mean(_rows([0, 1], [3, 5]), 0.0), [1.5, 3])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_rules_refuse_non_finite_values(bad: float) -> None:
    stack = _rows([1, 2], [bad, 2])
    for rule in ("fedavg", "median", "trimmed_mean"):
        with pytest.raises(InvalidParameter, match="NaN or infinite"):
            robust_mean(rule, stack, 0.1)


def test_rules_refuse_nothing_to_aggregate_and_bad_parameters() -> None:
    with pytest.raises(EmptyAggregate):
        coordinate_median(np.zeros((0, 3), np.float32))
    with pytest.raises(InvalidParameter, match="2-D"):
        coordinate_median(np.zeros(3, np.float32))
    with pytest.raises(InvalidParameter, match="aggregation"):
        check_rule("krum", 0.0)
    for trim in (-0.1, 0.5, float("nan")):
        with pytest.raises(InvalidParameter, match="trim_fraction"):
            check_rule("trimmed_mean", trim)


def test_update_stack_is_preallocated_to_its_bound_and_refuses_more() -> None:
    stack = UpdateStack(3, 1000)
    assert stack.nbytes == stack_bytes(3, 1000) == 12_000
    for value in (1.0, 2.0, 40.0):
        stack.add(np.full(1000, value, np.float32))
    assert stack.count == 3 and stack.nbytes == 12_000
    with pytest.raises(InvalidParameter, match="full"):
        stack.add(np.zeros(1000, np.float32))
    np.testing.assert_array_equal(stack.aggregate("median", 0.0), np.full(1000, 2.0))
    with pytest.raises(InvalidParameter, match="shape"):
        UpdateStack(2, 4).add(np.zeros(5, np.float32))


def _estimate(hospital: str, delta: list[float], n: int) -> PartialSum:
    return PartialSum(hospital, np.asarray(delta, np.float64) * n, n, 3)


def test_master_median_across_three_hospitals_ignores_the_bad_one() -> None:
    parts = [_estimate("h0", [1, 1], 10), _estimate("h1", [2, 2], 500),
             _estimate("h2", [-1e6, 1e6], 10)]  # fmt: skip
    opt, w = make_server_optimizer("fedavg"), np.zeros(2, np.float32)
    got = combine(parts, w, opt, ServerOptState(), rule="median")
    np.testing.assert_allclose(got.weights, [1, 2])  # per coordinate, the middle hospital
    assert got.num_examples == 520  # counts still add up for the metrics
    fedavg = combine(parts, w, opt, ServerOptState())
    assert abs(fedavg.weights[0]) > 1e4  # the same partials without the rule


def test_master_median_of_two_hospitals_is_their_unweighted_mean() -> None:
    parts = [_estimate("h0", [0, 4], 10), _estimate("h1", [2, 0], 1000)]
    got = combine(parts, np.zeros(2, np.float32), make_server_optimizer("fedavg"),
                  ServerOptState(), rule="median")  # fmt: skip
    np.testing.assert_allclose(got.weights, [1, 2])


def test_the_plan_names_exactly_the_rules_the_core_has() -> None:
    from flcore.robust import MAX_TRIM_FRACTION, RULES
    from schemas import round_plan

    assert round_plan.AGGREGATIONS == RULES
    assert round_plan.MAX_TRIM_FRACTION == MAX_TRIM_FRACTION
