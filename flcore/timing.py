"""How long a round admits devices and how long it runs, from the population it expects.

A fixed two-second selection window suits 30 devices and starves 1,000: the
selectors answer check-ins at a finite rate, so admitting ``n`` devices takes
about ``n / rate`` seconds however fast the devices come. The configured
window and timeout are therefore floors: :func:`round_timing` stretches the
window to answer every expected device at the check-in rate (the one observed
when a past window ran out before its targets, else an assumed one), and the
timeout keeps the configured time for training after it, or more when the
wanted updates need longer to upload at the upload rate. A long window costs
little: selection stops as soon as the admission targets are reached.

Over MQTT a device learns of a plan only after the broadcasts published before
it: the new model version (and, for a round opened by a fresh coordinator, the
artifact bundle) reach every device on its one connection, in order, ahead of
the plan. At 300 devices and a 100k-parameter model no device saw round 1's
plan within its 30 s (every check-in came after the window: parked, then sent
to the deadline). So the window also covers ``broadcast_bytes`` delivered to
every expected device at a fan-out byte rate, and the time after it covers the
wanted updates' bytes at an upload byte rate.
Everything is bounded: rates have a floor and the window a ceiling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flcore.errors import InvalidParameter

ASSUMED_CHECKINS_PER_S = 200.0
"""Check-ins a federation's selectors answer per second, until a window shows otherwise."""
ASSUMED_UPLOADS_PER_S = 100.0
"""Device updates the upload path takes per second (conservative for megabyte updates)."""
ASSUMED_FANOUT_BYTES_PER_S = 12.5e6
"""Distinct broadcast bytes devices receive per second, all devices together (measured on
two shared cores, Python devices, when each of two selector replicas still forwarded its own
copy: 300 devices took over 10 s for two copies of a 400 kB version). One replica forwards
each broadcast now, so this is conservative by up to two-fold."""
ASSUMED_UPLOAD_BYTES_PER_S = 25e6
"""Update bytes the upload path (MQTT, selector, Kafka) takes per second."""
MARGIN = 1.5
"""Head-room over the time the rates give (bursts, stragglers, other models' traffic)."""
MIN_RATE_PER_S = ASSUMED_CHECKINS_PER_S / 4
"""An observed rate below this is treated as this: a window that ran out because devices
were missing (not slow to answer) measures a low rate too, so an observation may stretch
the window at most four-fold over the assumed rate's."""
MAX_WINDOW_MS = 600_000
"""The longest selection window the rule gives (ten minutes)."""


@dataclass(frozen=True, slots=True)
class RoundTiming:
    """The selection window and round timeout to open a round with (ms from opening)."""

    selection_window_ms: int
    round_timeout_ms: int
    broadcast_ms: int = 0  # the part of the window spent delivering broadcasts


def round_timing(
    *,
    expected_devices: int,
    wanted_updates: int,
    min_window_ms: int,
    min_timeout_ms: int,
    checkins_per_s: float | None = None,
    uploads_per_s: float = ASSUMED_UPLOADS_PER_S,
    broadcast_bytes: int = 0,
    update_bytes: int = 0,
) -> RoundTiming:
    """The timing for a round expecting ``expected_devices`` and wanting ``wanted_updates``.

    ``min_window_ms`` and ``min_timeout_ms`` are the configured values (never
    shortened); ``checkins_per_s`` is the observed answer rate, None when none
    was observed (0 when a window answered nobody: the floor rate applies).
    ``broadcast_bytes`` is what each device receives before it can see the
    plan (the new version, artifacts); ``update_bytes`` the size of one update.
    Raises :class:`InvalidParameter` for negative counts, a window longer than
    the timeout, or a rate that is negative, not finite, or a zero upload rate.
    """
    if min(expected_devices, wanted_updates, broadcast_bytes, update_bytes) < 0:
        raise InvalidParameter(
            f"negative counts: devices {expected_devices}, updates {wanted_updates}, "
            f"bytes {broadcast_bytes}, {update_bytes}"
        )
    if not 0 < min_window_ms <= min_timeout_ms:
        raise InvalidParameter(f"need 0 < window {min_window_ms} <= timeout {min_timeout_ms}")
    if checkins_per_s is not None and not (checkins_per_s >= 0 and math.isfinite(checkins_per_s)):
        raise InvalidParameter(f"a check-in rate must be >= 0 and finite, got {checkins_per_s}")
    if not (uploads_per_s > 0 and math.isfinite(uploads_per_s)):
        raise InvalidParameter(f"an upload rate must be positive and finite, got {uploads_per_s}")
    rate = ASSUMED_CHECKINS_PER_S if checkins_per_s is None else checkins_per_s
    rate = max(MIN_RATE_PER_S, rate)
    broadcast = math.ceil(
        MARGIN * expected_devices * broadcast_bytes / ASSUMED_FANOUT_BYTES_PER_S * 1000
    )
    broadcast = min(broadcast, MAX_WINDOW_MS)
    needed = broadcast + math.ceil(MARGIN * expected_devices / rate * 1000)
    window = max(min_window_ms, min(needed, MAX_WINDOW_MS))
    uploads = math.ceil(
        MARGIN
        * wanted_updates
        * (1 / max(MIN_RATE_PER_S, uploads_per_s) + update_bytes / ASSUMED_UPLOAD_BYTES_PER_S)
        * 1000
    )
    after = max(min_timeout_ms - min_window_ms, min(uploads, MAX_WINDOW_MS))
    return RoundTiming(window, window + after, broadcast)


def observed_checkin_rate(answered: float, window_ms: int, *, targets_met: bool) -> float | None:
    """The check-in answer rate a finished selection window shows, or None if it shows none.

    Only a window that ran out before its targets were met measures the rate
    (``answered`` check-ins in ``window_ms``); one that met them early says
    only that the rate sufficed.
    """
    if targets_met or window_ms <= 0 or answered < 0:
        return None
    return answered / (window_ms / 1000)
