"""CheckIns on its own: the first thing that blocks a check-in is named, else it is sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import structlog

from device_sdk.checkin import CheckIns
from device_sdk.context import DeviceConfig, DeviceContext, DeviceStats
from device_sdk.eligibility import EligibilityPolicy, FixedConditions
from device_sdk.ledger import RoundLedger
from device_sdk.state import ModelState
from device_sdk.store import ExampleStore
from flbus.memory import MemoryPubSub
from schemas import CheckIn, decode
from schemas.topics import checkin_topic
from tests.support.device import BAD, GOOD, MODEL, FakeClock, plan

pytestmark = pytest.mark.unit


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[DeviceContext, ModelState, MemoryPubSub]]:
    """A context for device d0 of h0 with one labelled example, and MODEL's state."""
    clock, bus = FakeClock(), MemoryPubSub()
    store = ExampleStore(tmp_path / "examples.sqlite", {MODEL: 64})
    ledger = RoundLedger(tmp_path / "rounds.sqlite")
    config = DeviceConfig("d0", "h0", (MODEL,), tmp_path)
    ctx = DeviceContext(config, bus, store, ledger, DeviceStats(), clock, 0, structlog.get_logger())
    now = ctx.now()
    store.record_prediction("ex0", np.zeros(64, np.float32), 1, now, model=MODEL)
    store.attach_label("ex0", 1, now)
    state = ModelState(MODEL, tmp_path / "artifacts", lambda *_: False)  # no downloads here
    state.plan = plan(1)
    yield ctx, state, bus
    store.close()
    ledger.close()


def _checkins(ctx: DeviceContext, good: bool = True) -> CheckIns:
    conditions = FixedConditions(GOOD if good else BAD)
    return CheckIns(ctx, conditions, EligibilityPolicy(), lambda: datetime(2026, 1, 5, tzinfo=UTC))


Setup = Callable[[DeviceContext, ModelState], None]


def _other_hospital(ctx: DeviceContext, state: ModelState) -> None:
    state.plan = replace(plan(1), hospitals=("h1",))


def _closed(ctx: DeviceContext, state: ModelState) -> None:
    state.plan = replace(plan(1), state="closed")


def _busy(ctx: DeviceContext, state: ModelState) -> None:
    state.busy_round = 1


def _told_to_wait(ctx: DeviceContext, state: ModelState) -> None:
    state.retry_at_ms = ctx.clock() + 1


def _taken_part(ctx: DeviceContext, state: ModelState) -> None:
    ctx.ledger.claim(MODEL, 1, "uploaded", "u1", ctx.clock())


def _no_labels(ctx: DeviceContext, state: ModelState) -> None:
    ctx.store.purge(ctx.now().replace(year=2100))


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (_closed, "no_selecting_plan"),
        (_other_hospital, "hospital_not_in_plan"),
        (_busy, "busy"),
        (_told_to_wait, "retry_later"),
        (_taken_part, "already_taken_part"),
        (_no_labels, "no_labelled_examples"),
    ],
)
def test_checkin_blocker_names_what_blocks_it(
    parts: tuple[DeviceContext, ModelState, MemoryPubSub], setup: Setup, reason: str
) -> None:
    ctx, state, _ = parts
    setup(ctx, state)
    assert _checkins(ctx).blocker(state) == reason


def test_checkin_blocker_names_every_failed_condition(
    parts: tuple[DeviceContext, ModelState, MemoryPubSub],
) -> None:
    ctx, state, _ = parts
    assert (
        _checkins(ctx, good=False).blocker(state)
        == "ineligible:not_charging,metered_network,battery_low"
    )


async def test_checkin_sent_once_while_its_answer_is_awaited(
    parts: tuple[DeviceContext, ModelState, MemoryPubSub],
) -> None:
    # Prepare
    ctx, state, bus = parts
    await bus.start()
    sub = await bus.subscribe([checkin_topic("h0", "d0")])
    checkins = _checkins(ctx)
    # Execute: two ticks before the selector answers.
    await checkins.maybe_check_in(state)
    await checkins.maybe_check_in(state)
    first, second = await sub.get(1.0), await sub.get(0.1)
    await bus.stop()
    # Assert
    assert first is not None and second is None
    msg = decode(first.value)
    assert isinstance(msg, CheckIn) and (msg.device_id, msg.models) == ("d0", (MODEL,))
    assert checkins.blocker(state) == "awaiting_answer" and ctx.stats.checkins == 1
