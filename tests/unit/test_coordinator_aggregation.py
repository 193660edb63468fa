"""The coordinator's aggregation setting: checked at start-up, carried by every plan."""

from __future__ import annotations

import pytest

from flproc.errors import SettingError
from services.coordinator import plans
from services.coordinator.config import RoundSettings

pytestmark = pytest.mark.unit


def _plan(settings: RoundSettings):  # type: ignore[no-untyped-def]
    terms = plans.round_terms("digits_mlp", 1, 0, {"h0": 3, "h1": 2}, settings, 1_000)
    return plans.wire_plan(terms, settings, "selecting", 1.0, 1_000)


def test_plan_carries_the_rule_and_the_trim_only_for_trimmed_mean() -> None:
    assert (_plan(RoundSettings()).aggregation, _plan(RoundSettings()).trim_fraction) == (
        "fedavg",
        0.0,
    )
    median = _plan(RoundSettings(aggregation="median", trim_fraction=0.3))
    assert (median.aggregation, median.trim_fraction) == ("median", 0.0)
    trimmed = _plan(RoundSettings(aggregation="trimmed_mean", trim_fraction=0.3))
    assert (trimmed.aggregation, trimmed.trim_fraction) == ("trimmed_mean", 0.3)


@pytest.mark.parametrize(
    ("rule", "trim", "field"),
    [("krum", 0.1, "aggregation"), ("trimmed_mean", 0.5, "trim_fraction")],
)
def test_bad_rule_or_trim_is_refused_naming_it(rule: str, trim: float, field: str) -> None:
    with pytest.raises(SettingError) as err:
        RoundSettings(aggregation=rule, trim_fraction=trim)
    assert err.value.setting == field
