"""Example counts: the plan's bound and the device's own history."""

from __future__ import annotations

import pytest

from flcore.errors import InvalidParameter
from flcore.examples import ExampleHistory, example_weight, plan_max_examples

pytestmark = pytest.mark.unit


def test_plan_bound_is_steps_times_batch_or_the_cap_whichever_is_smaller() -> None:
    assert plan_max_examples(10, 32, 100_000) == 320
    assert plan_max_examples(10, 32, 100) == 100
    assert plan_max_examples(0, 32, 500) == 500  # no step cap: the aggregator's cap
    assert plan_max_examples(0, 32, 0) == 0  # nothing bounds it


def test_example_weight_grows_by_the_factor_at_most() -> None:
    assert example_weight(500, None, 2.0) == (500, False)  # first report
    assert example_weight(20, 10, 2.0) == (20, False)
    assert example_weight(21, 10, 2.0) == (20, True)
    assert example_weight(4, 10, 2.0) == (4, False)  # shrinking is fine (labels expire)


def test_history_is_bounded_and_forgets_the_least_recent_device() -> None:
    history = ExampleHistory(limit=2, growth=2.0)
    history.weigh("a", 10)
    history.weigh("b", 10)
    history.weigh("a", 10)  # a is now the most recent
    history.weigh("c", 10)  # b goes
    assert len(history) == 2
    assert history.weigh("b", 1000) == (1000, False)  # forgotten: a first report again
    assert history.weigh("a", 1000) == (1000, False)  # a was pushed out by b
    assert history.weigh("c", 1000) == (1000, False)
    history = ExampleHistory(limit=10, growth=2.0)
    history.weigh("x", 10)
    assert history.weigh("x", 10**6) == (20, True)
    assert history.weigh("x", 10**6) == (40, True)  # the clamped weight is what it remembers


def test_history_refuses_a_bad_bound() -> None:
    with pytest.raises(InvalidParameter):
        ExampleHistory(0, 2.0)
    with pytest.raises(InvalidParameter):
        ExampleHistory(10, 0.5)
