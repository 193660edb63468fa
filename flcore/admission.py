"""Stateless admission and pace steering: any selector replica gives any device the same answer.

A device is admitted to a round when a stable hash of (model, round, hospital,
device), mapped to a uniform number in [0, 1), falls below the admission
probability the coordinator publishes in the round plan. Over many devices the
admitted fraction approaches the probability; for one device the answer never
changes within a round, so retries and replica hops are harmless.

The devices a hospital is expected to have are learnt from check-ins, which
anyone can send: :func:`learnt_population` bounds what they can make the
coordinator believe (at most ``ceiling`` devices, and a goal that grows at
most ``growth`` times from one round to the next).

Declined devices get a "come back at" time: after the current round's
deadline (when the next round's selection is likely open) plus a jitter drawn
from a second hash, which spreads the herd of returning devices. It is never
earlier than ``now_ms + min_backoff_ms``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from enum import StrEnum

from flcore._canonical import encode_fields
from flcore.errors import InvalidParameter

DEFAULT_OVER_SELECTION = 1.3


class DeclineReason(StrEnum):
    """Why a device was told to come back later."""

    NOT_ELIGIBLE = "not_eligible"
    NOT_SELECTED = "not_selected"
    SELECTION_CLOSED = "selection_closed"


@dataclass(frozen=True, slots=True)
class Admit:
    """The device takes part in ``round_id``; the shell issues the task and token."""

    round_id: int
    draw: float


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """The device should check in again at ``at_ms`` (always later than now)."""

    at_ms: int
    reason: DeclineReason


def stable_uniform(*fields: str | int, salt: str = "admit") -> float:
    """Map fields to a uniform number in [0, 1) via SHA-256; equal fields give equal numbers."""
    digest = hashlib.sha256(encode_fields(salt, *fields)).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def admit(
    *,
    device_id: str,
    hospital_id: str,
    model: str,
    round_id: int,
    admission_probability: float,
    eligible: bool,
    now_ms: int,
    selection_deadline_ms: int,
    retry_jitter_ms: int = 60_000,
    min_backoff_ms: int = 1_000,
) -> Admit | RetryAfter:
    """Admit a checked-in device to the open round of ``model``, or tell it when to return."""
    if retry_jitter_ms < 0 or min_backoff_ms <= 0:
        raise InvalidParameter("retry_jitter_ms must be >= 0 and min_backoff_ms > 0")
    draw = stable_uniform(model, round_id, hospital_id, device_id)
    if not eligible:
        reason = DeclineReason.NOT_ELIGIBLE
    elif now_ms >= selection_deadline_ms:
        reason = DeclineReason.SELECTION_CLOSED
    elif draw < admission_probability:
        return Admit(round_id=round_id, draw=draw)
    else:
        reason = DeclineReason.NOT_SELECTED
    jitter = stable_uniform(model, round_id, hospital_id, device_id, salt="retry")
    at = max(selection_deadline_ms, now_ms + min_backoff_ms) + int(jitter * retry_jitter_ms)
    return RetryAfter(at_ms=at, reason=reason)


def admission_probability(
    goal: int, expected_checkins: float, over_selection: float = DEFAULT_OVER_SELECTION
) -> float:
    """Probability admitting ``goal * over_selection`` of ``expected_checkins``, in (0, 1]."""
    if goal <= 0:
        raise InvalidParameter(f"goal must be > 0, got {goal}")
    if not over_selection >= 1.0:
        raise InvalidParameter(f"over_selection must be >= 1, got {over_selection}")
    if not math.isfinite(expected_checkins) or expected_checkins <= goal * over_selection:
        # Too few (or unknown) check-ins to be choosy: take everyone.
        return 1.0
    return goal * over_selection / expected_checkins


def learnt_population(
    known: int,
    seen: int,
    previous_goal: int | None,
    *,
    fraction: float,
    growth: float,
    ceiling: int,
) -> int:
    """Devices a hospital is expected to have: ``known`` (configured, trusted) or, if more,
    the ``seen`` devices that checked in, bounded so a flood of fake check-ins cannot
    make absurd goals.

    The learnt part is at most ``ceiling``, and at most what lets the goal
    (``fraction`` of the population) grow ``growth`` times past ``previous_goal``
    (None: no previous round, only the ceiling applies).
    """
    if not growth >= 1.0 or ceiling < 1 or not 0 < fraction <= 1:
        raise InvalidParameter(
            "need growth >= 1, ceiling >= 1 and 0 < fraction <= 1, "
            f"got {growth}, {ceiling} and {fraction}"
        )
    learnt = min(seen, ceiling)
    if previous_goal is not None:
        learnt = min(learnt, math.floor(max(1, previous_goal) * growth / fraction))
    return max(known, learnt)
