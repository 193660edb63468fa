"""The round timing rule: configured values for small federations, stretched for large ones."""

import pytest

from flcore.errors import InvalidParameter
from flcore.timing import (
    ASSUMED_CHECKINS_PER_S,
    ASSUMED_FANOUT_BYTES_PER_S,
    ASSUMED_UPLOAD_BYTES_PER_S,
    MAX_WINDOW_MS,
    RoundTiming,
    observed_checkin_rate,
    round_timing,
)

pytestmark = pytest.mark.unit

DEFAULTS = {"min_window_ms": 2_000, "min_timeout_ms": 30_000}


def test_thirty_devices_keep_the_configured_timing() -> None:
    got = round_timing(expected_devices=30, wanted_updates=39, **DEFAULTS)
    assert got == RoundTiming(2_000, 30_000)


def test_a_thousand_devices_get_a_window_long_enough_to_answer_them_all() -> None:
    got = round_timing(expected_devices=1_000, wanted_updates=1_300, **DEFAULTS)
    answered_in_window = got.selection_window_ms / 1000 * ASSUMED_CHECKINS_PER_S
    assert answered_in_window >= 1_000  # the 2 s default answered 64-128 of them
    assert got.round_timeout_ms - got.selection_window_ms >= 28_000  # training time kept


def test_the_window_grows_with_the_population() -> None:
    windows = [
        round_timing(expected_devices=n, wanted_updates=n, **DEFAULTS).selection_window_ms
        for n in (300, 1_000, 3_000, 10_000)
    ]
    assert windows == sorted(windows) and windows[0] < windows[-1]


def test_an_observed_slow_rate_stretches_the_window() -> None:
    assumed = round_timing(expected_devices=1_000, wanted_updates=1_300, **DEFAULTS)
    slow = round_timing(
        expected_devices=1_000, wanted_updates=1_300, checkins_per_s=50.0, **DEFAULTS
    )
    assert slow.selection_window_ms >= 1_000 / 50 * 1000 > assumed.selection_window_ms


def test_many_uploads_lengthen_the_time_after_selection() -> None:
    got = round_timing(expected_devices=30, wanted_updates=5_000, uploads_per_s=100.0, **DEFAULTS)
    assert got.round_timeout_ms - got.selection_window_ms >= 50_000


def test_everything_is_bounded() -> None:
    got = round_timing(
        expected_devices=10**9, wanted_updates=10**9, checkins_per_s=1e-9, **DEFAULTS
    )
    assert got.selection_window_ms == MAX_WINDOW_MS
    assert got.round_timeout_ms == 2 * MAX_WINDOW_MS


def test_missing_devices_stretch_the_window_at_most_four_fold() -> None:
    # 1,000 expected, 100 online: the window runs out with 100 answered, a "rate" of 20/s.
    assumed = round_timing(expected_devices=1_000, wanted_updates=1_300, **DEFAULTS)
    starved = round_timing(
        expected_devices=1_000, wanted_updates=1_300, checkins_per_s=20.0, **DEFAULTS
    )
    assert starved.selection_window_ms == 4 * assumed.selection_window_ms


def test_configured_values_are_floors_never_shortened() -> None:
    got = round_timing(
        expected_devices=1_000, wanted_updates=10, min_window_ms=60_000, min_timeout_ms=90_000
    )
    assert got == RoundTiming(60_000, 90_000)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"expected_devices": -1},
        {"min_window_ms": 40_000},
        {"min_window_ms": 0},
        {"checkins_per_s": -1.0},
        {"uploads_per_s": 0.0},
        {"uploads_per_s": float("nan")},
    ],
)
def test_bad_inputs_are_refused(kwargs: dict[str, float]) -> None:
    args = {"expected_devices": 10, "wanted_updates": 10, **DEFAULTS, **kwargs}
    with pytest.raises(InvalidParameter):
        round_timing(**args)  # type: ignore[arg-type]


def test_a_window_that_answered_nobody_gets_the_floor_rate() -> None:
    got = round_timing(expected_devices=100, wanted_updates=100, checkins_per_s=0.0, **DEFAULTS)
    assert got.selection_window_ms == 3_000  # 1.5 * 100 / 50 per second


def test_only_a_window_that_ran_out_measures_the_rate() -> None:
    assert observed_checkin_rate(100, 2_000, targets_met=False) == 50.0
    assert observed_checkin_rate(100, 2_000, targets_met=True) is None


def test_the_window_covers_the_version_every_device_receives_before_the_plan() -> None:
    # Over MQTT the new version reaches a device on its one connection ahead of the plan:
    # at 1,000 devices and 1M parameters that is 4 GB before the last device can check in.
    plain = round_timing(expected_devices=1_000, wanted_updates=1_000, **DEFAULTS)
    got = round_timing(
        expected_devices=1_000,
        wanted_updates=1_000,
        broadcast_bytes=4_000_000,
        update_bytes=4_000_000,
        **DEFAULTS,
    )
    delivery_ms = 1_000 * 4_000_000 / ASSUMED_FANOUT_BYTES_PER_S * 1000
    assert got.selection_window_ms >= delivery_ms + plain.selection_window_ms
    assert got.broadcast_ms >= delivery_ms
    uploads_ms = 1_000 * 4_000_000 / ASSUMED_UPLOAD_BYTES_PER_S * 1000
    assert got.round_timeout_ms - got.selection_window_ms >= uploads_ms


def test_negative_byte_counts_are_refused() -> None:
    with pytest.raises(InvalidParameter, match="bytes"):
        round_timing(expected_devices=1, wanted_updates=1, broadcast_bytes=-1, **DEFAULTS)
