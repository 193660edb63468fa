"""Aggregator and coordinator health follow their consumers' progress, not a timer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flbus.memory import MemoryLog
from flbus.port import Record
from flproc.health import ConsumerLag
from schemas import topics
from services.aggregator.app import build
from tests.support.aggregator import World, eventually
from tests.support.coordinator import checkins, running_coordinator

pytestmark = pytest.mark.unit


class Clock:
    """Seconds, moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_stale_only_when_records_wait_and_none_was_handled_for_stall_s() -> None:
    clock = Clock()
    lag = ConsumerLag("updates", stall_s=10, clock=clock)
    assert lag.measured({"p0": 5}, {"p0": 5}) == 0
    clock.now += 60
    assert lag.problem() is None  # idle is healthy, however long
    assert lag.measured({"p0": 9, "p1": 3}, {"p0": 5}) == 4  # p1: position unknown yet
    clock.now += 9
    assert lag.problem() is None
    clock.now += 2
    assert lag.problem() == "updates: 4 waiting, none done for 11s"
    lag.handled()
    assert lag.problem() is None
    clock.now += 11
    assert lag.measured({"p0": 9}, {"p0": 6}) == 3
    assert lag.problem() is not None  # still waiting, nothing handled since
    assert lag.measured({"p0": 9}, {"p0": 9}) == 0
    assert lag.problem() is None


async def test_a_broker_that_fails_or_does_not_answer_makes_the_consumer_stale() -> None:
    lag = ConsumerLag("updates", stall_s=10, every_s=0.02)
    stop, answer = asyncio.Event(), asyncio.Event()

    async def ends() -> dict[str, int]:
        if not answer.is_set():
            await asyncio.sleep(3600)  # a SIGSTOPped broker
        return {"p0": 1}

    async def measure() -> tuple[dict[str, int], dict[str, int]]:
        return await ends(), {"p0": 1}

    task = asyncio.create_task(lag.watch(measure, stop))
    await eventually(lambda: lag.problem() == "updates: end offsets unanswered for 0.02s")
    answer.set()
    await eventually(lambda: lag.problem() is None)

    async def broken() -> tuple[dict[str, int], dict[str, int]]:
        raise ConnectionError("refused")

    stop.set()
    await task
    stop.clear()
    task = asyncio.create_task(lag.watch(broken, stop))
    await eventually(lambda: "end offsets failed: ConnectionError" in (lag.problem() or ""))
    stop.set()
    await task


async def test_an_aggregator_whose_updates_wait_unhandled_goes_stale() -> None:
    world = World()
    await world.bus.start()
    await world.version(0)
    await world.plan(goal=10)
    clock = Clock()
    agg = build(world.config(), world.bus, world.clock)
    agg.health = ConsumerLag("updates", stall_s=10, clock=clock, every_s=0.01)
    gate = asyncio.Event()
    handle = agg.on_update

    async def stuck(record: Record) -> None:
        await gate.wait()  # a handler stuck on something
        await handle(record)

    agg.on_update = stuck  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(agg.run(stop))
    for i in range(3):
        await world.send(world.update(f"d{i}"))
    await asyncio.sleep(0.2)
    assert agg.problem() is None  # waiting, but not for long yet
    clock.now += 11
    await eventually(lambda: (agg.problem() or "").startswith("updates: "))
    gate.set()
    await eventually(lambda: agg.stats().accepted == 3)
    await eventually(lambda: agg.problem() is None)
    stop.set()
    await task
    await world.bus.stop()


async def test_a_coordinator_whose_records_wait_unhandled_goes_stale(tmp_path: Path) -> None:
    bus, clock, gate = MemoryLog(), Clock(), asyncio.Event()
    await bus.start()
    async with running_coordinator(tmp_path, bus=bus) as h:
        c = h.coordinator
        c.health = ConsumerLag("coordinator", stall_s=10, clock=clock, every_s=0.01)
        handle = c.handle

        async def stuck(record: Record, now_ms: int) -> None:
            if record.topic == topics.KAFKA_CHECKINS:
                await gate.wait()
            await handle(record, now_ms)

        c.handle = stuck  # type: ignore[method-assign]
        await h.next_plan()  # running, past its catch-up
        await checkins(bus, "h0", range(5), h.clock())
        await asyncio.sleep(0.2)
        assert c.problem() is None
        clock.now += 11
        await eventually(lambda: (c.problem() or "").startswith("coordinator: "))
        gate.set()
        await eventually(lambda: c.problem() is None)
    await bus.stop()
