"""A restarted coordinator resumes: open round, partials sent while it was down, population.

And a flood of check-ins cannot turn into absurd goals.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flbus.memory import MemoryLog
from tests.support.coordinator import (
    checkins,
    plan_of,
    restart_mid_round,
    running_coordinator,
)

pytestmark = pytest.mark.unit


async def test_restart_mid_round_closes_it_with_partials_sent_while_down(tmp_path: Path) -> None:
    bus = MemoryLog()
    await bus.start()
    await restart_mid_round(bus, tmp_path)
    await bus.stop()


async def test_a_flood_of_checkins_cannot_make_absurd_goals(tmp_path: Path) -> None:
    async with running_coordinator(
        tmp_path, population={"h1": 4}, max_devices_per_hospital=1_000
    ) as h:
        plan = await plan_of(h, 1, "selecting")
        await checkins(h.bus, "h0", range(5_000), h.clock.now)  # fake devices
        await checkins(h.bus, "made-up", range(100), h.clock.now)
        async with asyncio.timeout(10):
            while len(h.rounds.learnt.seen.get("h0", ())) < 1_000:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
        assert len(h.rounds.learnt.seen["h0"]) == 1_000  # bounded, not 5,000
        assert set(h.rounds.learnt.seen) == {"h0"}  # no unconfigured hospital kept
        goals = []
        for round_id in (1, 2, 3):
            plan = plan if round_id == 1 else await plan_of(h, round_id, "selecting")
            goals.append(dict(zip(plan.hospitals, plan.targets, strict=True)))
            await checkins(h.bus, "h0", range(5_000), h.clock.now)
            await asyncio.sleep(0.1)
            h.clock.now = plan.deadline_ms + 600  # no partials: abandoned, the next opens
    assert [g["h0"] for g in goals] == [1, 2, 4]  # at most doubling per round
    assert all(g["h1"] == 4 for g in goals)  # the configured population is kept
