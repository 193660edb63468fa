"""A restarted coordinator resumes: open round, partials sent while it was down, population.

And a flood of check-ins cannot turn into absurd goals.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from flbus.memory import MemoryLog
from flstore import MemoryModelStore
from modelzoo import flatten
from schemas import RoundPlan, topics
from tests.support.coordinator import MODEL, FakeClock, Harness, checkin, running_coordinator

pytestmark = pytest.mark.unit


async def _plan(h: Harness, round_id: int, state: str) -> RoundPlan:
    while True:
        plan = await h.next_plan(state)
        if plan.round_id == round_id:
            return plan


async def _checkins(bus: MemoryLog, hospital: str, devices: range, now_ms: int) -> None:
    for d in devices:
        await bus.publish(topics.KAFKA_CHECKINS, checkin(hospital, f"d{d}", now_ms))


async def test_restart_mid_round_closes_it_with_partials_sent_while_down(tmp_path: Path) -> None:
    bus, clock, store = MemoryLog(), FakeClock(), MemoryModelStore()
    await bus.start()
    kw = {"bus": bus, "clock": clock, "store": store, "population": {}}
    async with running_coordinator(tmp_path, **kw) as first:  # type: ignore[arg-type]
        v0 = await first.next_version()
        plan = await _plan(first, 1, "selecting")
        assert dict(zip(plan.hospitals, plan.targets, strict=True)) == {"h0": 1, "h1": 1}
        await _checkins(bus, "h0", range(3), clock.now)  # learnt: 3 devices each
        await _checkins(bus, "h1", range(3), clock.now)
        await asyncio.sleep(0.1)
    # The coordinator is down; the aggregators publish their partials of round 1.
    size = v0.tensors.flat.size
    partials_at = Harness(bus, clock, first.coordinator, store, first.plans, first.versions)
    await partials_at.partial(plan, "h0", np.full(size, 1.0, np.float32), n=10, updates=1)
    await partials_at.partial(plan, "h1", np.full(size, 3.0, np.float32), n=10, updates=1)
    async with running_coordinator(tmp_path, **kw) as second:  # type: ignore[arg-type]
        done = await _plan(second, 1, "done")
        nxt = await _plan(second, 2, "selecting")
        summary = second.rounds.history[0]
    assert done.reason == "all hospitals reported" and summary.reported == {"h0": 1, "h1": 1}
    latest = store.latest(MODEL)
    assert latest is not None and (latest.version, latest.round_id) == (1, 1)
    _, named = store.get(MODEL, 1)
    expected = v0.tensors.flat + 2.0  # (10 * 1 + 10 * 3) / 20: both partials count
    np.testing.assert_allclose(flatten(named, second.rounds.manifest), expected, atol=1e-5)
    assert nxt.base_version == 1
    # The population learnt before the restart plans round 2 (goal growth capped at 2x).
    assert dict(zip(nxt.hospitals, nxt.targets, strict=True)) == {"h0": 2, "h1": 2}
    await bus.stop()


async def test_a_flood_of_checkins_cannot_make_absurd_goals(tmp_path: Path) -> None:
    async with running_coordinator(
        tmp_path, population={"h1": 4}, max_devices_per_hospital=1_000
    ) as h:
        plan = await _plan(h, 1, "selecting")
        await _checkins(h.bus, "h0", range(5_000), h.clock.now)  # fake devices
        await _checkins(h.bus, "made-up", range(100), h.clock.now)
        async with asyncio.timeout(10):
            while len(h.rounds.learnt.seen.get("h0", ())) < 1_000:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
        assert len(h.rounds.learnt.seen["h0"]) == 1_000  # bounded, not 5,000
        assert set(h.rounds.learnt.seen) == {"h0"}  # no unconfigured hospital kept
        goals = []
        for round_id in (1, 2, 3):
            plan = plan if round_id == 1 else await _plan(h, round_id, "selecting")
            goals.append(dict(zip(plan.hospitals, plan.targets, strict=True)))
            await _checkins(h.bus, "h0", range(5_000), h.clock.now)
            await asyncio.sleep(0.1)
            h.clock.now = plan.deadline_ms + 600  # no partials: abandoned, the next opens
    assert [g["h0"] for g in goals] == [1, 2, 4]  # at most doubling per round
    assert all(g["h1"] == 4 for g in goals)  # the configured population is kept
