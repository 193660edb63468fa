"""The coordinator opens rounds with a window and deadline fitted to the population it expects."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.coordinator import running_coordinator

pytestmark = pytest.mark.unit


async def test_a_small_federation_keeps_the_configured_timing(tmp_path: Path) -> None:
    async with running_coordinator(tmp_path) as h:
        plan = await h.next_plan("selecting")
        assert plan.deadline_ms - plan.opened_at_ms == 10_000


async def test_a_thousand_devices_get_a_longer_window_and_deadline(tmp_path: Path) -> None:
    population = {"h0": 500, "h1": 500}
    async with running_coordinator(tmp_path, population=population) as h:
        plan = await h.next_plan("selecting")
        assert plan.deadline_ms - plan.opened_at_ms > 10_000
        h.clock.now = plan.opened_at_ms + 3_000  # past the configured 1 s window
        await asyncio.sleep(0.2)  # ticks every 5 ms
        assert h.rounds.state is not None
        assert h.rounds.state.phase.value == "selecting", "the window closed on 1,000 devices"
        h.clock.now = plan.deadline_ms - 1
        await h.next_plan("training")  # still closes before the deadline
