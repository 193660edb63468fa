"""Eligibility: the policy's reasons and the simulated phone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from device_sdk.eligibility import (
    DeviceConditions,
    EligibilityPolicy,
    FixedConditions,
    SimulatedConditions,
)

pytestmark = pytest.mark.unit

GOOD = DeviceConditions(
    charging=True, unmetered_network=True, idle=True, battery_level=0.9, free_memory_mb=1024
)


def test_policy_admits_a_charging_idle_device_on_wifi() -> None:
    decision = EligibilityPolicy().check(FixedConditions(GOOD).conditions(datetime.now(UTC)))
    assert decision.eligible and decision.reasons == ()


def test_policy_lists_every_failed_condition() -> None:
    bad = DeviceConditions(
        charging=False, unmetered_network=False, idle=False, battery_level=0.2, free_memory_mb=10
    )
    decision = EligibilityPolicy(min_battery=0.5, min_free_memory_mb=256).check(bad)
    assert not decision.eligible
    assert decision.reasons == (
        "not_charging",
        "metered_network",
        "not_idle",
        "battery_low",
        "memory_low",
    )


def test_policy_relaxed_requirements_admit_a_device_on_battery() -> None:
    on_battery = DeviceConditions(
        charging=False, unmetered_network=True, idle=True, battery_level=0.9, free_memory_mb=1024
    )
    assert not EligibilityPolicy().check(on_battery).eligible
    assert EligibilityPolicy(require_charging=False).check(on_battery).eligible


def test_simulated_device_is_deterministic_per_seed_and_time() -> None:
    at = datetime(2025, 3, 4, 23, 30, tzinfo=UTC)
    assert SimulatedConditions(7).conditions(at) == SimulatedConditions(7).conditions(at)


def test_simulated_device_trains_about_three_nights_a_week_and_never_by_day() -> None:
    sim, policy = SimulatedConditions(seed=1), EligibilityPolicy(require_idle=True)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    nights = [policy.check(sim.conditions(start + timedelta(days=d, hours=23))) for d in range(700)]
    days = [policy.check(sim.conditions(start + timedelta(days=d, hours=14))) for d in range(700)]
    share = sum(d.eligible for d in nights) / len(nights)
    assert 2.4 / 7 < share < 3.6 / 7
    assert not any(d.eligible for d in days)
    # The charging decision holds for the whole night, across midnight.
    for d in range(50):
        evening = sim.conditions(start + timedelta(days=d, hours=23))
        morning = sim.conditions(start + timedelta(days=d + 1, hours=3))
        assert evening.charging == morning.charging
