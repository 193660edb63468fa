"""Every service consumer skips a poison record into fl.v1.dead-letters and goes on.

For each role on the in-memory bus: garbage bytes and a valid message of the
wrong type, then a valid message. The valid one is handled; the poison ones
are dead letters with their origin and reason, counted in the role's stats;
the aggregator (a group consumer) commits past them. A poison record on the
compacted round-plans topic, reread at every start, does not stop a restart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import structlog

from flbus.memory import MemoryLog
from flbus.port import TopicPartition
from flctl.dlq import read_dead_letters
from schemas import AuditEvent, CheckIn, Chunk, RoundPlan, decode, encode, topics
from schemas.chunking import digest
from schemas.dead_letter import DeadLetter
from schemas.topics import KAFKA_ROUND_PLANS, partials_topic, plan_topic, updates_topic
from tests.support.aggregator import SIZE, World, eventually
from tests.support.coordinator import MODEL, running_coordinator
from tests.unit.test_selector_bridge import retained
from tests.unit.test_selector_checkin import plan, running, until

pytestmark = pytest.mark.unit

GARBAGE = b"\x00\xffnot an arrow stream"
WRONG = encode(AuditEvent("device.admitted", "m1", 1, "h0", "d1", "selected", "", 5))


async def letters(bus: MemoryLog, topic: str | None = None) -> list[DeadLetter]:
    await bus.start()  # a role's harness stops the bus on exit; its logs are kept
    return (await read_dead_letters(bus, topic)).letters


def origins(found: list[DeadLetter]) -> list[tuple[str, int, str, str]]:
    return [(d.origin_topic, d.origin_offset, d.role, d.reason) for d in found]


# -- aggregator ---------------------------------------------------------------


async def test_aggregator_dead_letters_poison_updates_and_commits_past_them() -> None:
    world = World()
    await world.bus.start()
    await world.version(0)
    topic = updates_topic(world.hospital)
    first = await world.start()
    with structlog.testing.capture_logs() as logs:
        await world.send_raw("bad", GARBAGE)
        await world.send_raw("bad", WRONG)
        await eventually(lambda: sum(first.stats().dead_lettered.values()) == 2)
    await world.stop(first, crash=True)  # no commit on the way out: only what it did before

    group = await world.bus.subscribe([topic], group=world.config().consumer_group)
    committed = await group.committed(TopicPartition(topic, 0))
    await group.close()
    second = await world.start()  # resumes past the poison: reads it neither again
    await world.plan(goal=1)
    await world.send(world.update("d1", np.ones(SIZE)))
    await eventually(lambda: second.stats().partials == 1)
    await world.stop(second)

    assert committed == 2
    assert dict(first.stats().dead_lettered) == {"undecodable": 1, "unexpected_type": 1}
    assert not first.stats().rejected and not second.stats().dead_lettered
    assert "dead_lettered" in second.stats().as_dict()
    found = await letters(world.bus)
    assert origins(found) == [
        (topic, 0, "aggregator", "undecodable"),
        (topic, 1, "aggregator", "unexpected_type"),
    ]
    assert {d.hospital_id for d in found} == {world.hospital}
    assert [bytes(d.original) for d in found] == [GARBAGE, WRONG]
    assert bytes(found[0].origin_key) == b"bad"
    dead = [e for e in logs if e["event"] == "record.dead_lettered"]
    assert [(e["topic"], e["partition"], e["offset"]) for e in dead] == [
        (topic, 0, 0),
        (topic, 0, 1),
    ]
    [partial] = await world.partials()
    assert partial.num_updates == 1 and partial.rejected == 0
    assert not [e for e in await world.audits() if e.kind == "update.rejected"]


async def test_aggregator_restarts_over_poison_in_round_plans_and_partials() -> None:
    world = World()
    await world.bus.start()
    await world.version(0)
    await world.bus.publish(KAFKA_ROUND_PLANS, GARBAGE, key=b"poison")
    await world.bus.publish(KAFKA_ROUND_PLANS, WRONG, key=b"poison")
    # Looks like this hospital's partial of round "²": str.isdigit() says yes, int() raises.
    sid = f"{world.model}/r\u00b2/{world.hospital}"
    await world.bus.publish(
        partials_topic(world.hospital),
        encode(Chunk(sid, "PartialAggregate", 0, 1, 3, 3, digest(b"abc"), b"abc")),
    )
    await world.plan(goal=1)

    first = await world.start()
    await world.send(world.update("d1", np.ones(SIZE)))
    await eventually(lambda: first.stats().partials == 1)
    await world.stop(first, crash=True)
    second = await world.start()  # rereads both topics from the start
    await eventually(lambda: sum(second.stats().dead_lettered.values()) == 3)
    await world.stop(second)

    assert dict(second.stats().dead_lettered) == {
        "undecodable": 1, "unexpected_type": 1, "handler_error": 1
    }  # fmt: skip
    assert origins(await letters(world.bus)) == 2 * [
        (partials_topic(world.hospital), 0, "aggregator", "handler_error"),
        (KAFKA_ROUND_PLANS, 0, "aggregator", "undecodable"),
        (KAFKA_ROUND_PLANS, 1, "aggregator", "unexpected_type"),
    ]  # once per start
    assert first.stats().as_dict()["partials"] == 1


# -- coordinator --------------------------------------------------------------


async def test_coordinator_dead_letters_poison_and_closes_the_round(tmp_path: Path) -> None:
    async with running_coordinator(tmp_path) as h:
        v0 = await h.next_version()
        p = await h.next_plan("selecting")
        with structlog.testing.capture_logs() as logs:
            await h.bus.publish(topics.partials_topic("h0"), GARBAGE)
            await h.bus.publish(topics.KAFKA_AUDIT, encode(CheckIn(
                "d1", "h0", (MODEL,), "ort", "0.1", True, True, True, 50.0, 10, 1
            )))  # fmt: skip
            await h.bus.publish(topics.KAFKA_CHECKINS, WRONG)
            await h.partial(p, "h0", np.ones(v0.tensors.flat.size, np.float32), n=4)
            await h.partial(p, "h1", np.ones(v0.tensors.flat.size, np.float32), n=4)
            v1 = await h.next_version()
        errors = dict(h.coordinator.errors)
        bus = h.bus

    assert v1.version == 1
    assert errors == {"undecodable": 1, "unexpected_type": 2}
    found = await letters(bus)
    assert sorted((d.origin_topic, d.reason) for d in found) == [
        (topics.KAFKA_AUDIT, "unexpected_type"),
        (topics.KAFKA_CHECKINS, "unexpected_type"),
        (topics.partials_topic("h0"), "undecodable"),
    ]
    assert {d.role for d in found} == {"coordinator"}
    assert sum(e["event"] == "record.dead_lettered" for e in logs) == 3


async def test_coordinator_restarts_over_poison_in_round_plans(tmp_path: Path) -> None:
    bus = MemoryLog()
    await bus.start()  # one log for both runs: the second is a restart
    async with running_coordinator(tmp_path, bus=bus) as h:
        await h.next_plan("selecting")
        await bus.publish(KAFKA_ROUND_PLANS, GARBAGE, key=b"poison")
        store, clock = h.store, h.clock

    async with running_coordinator(tmp_path, store=store, bus=bus, clock=clock) as h:
        h.clock.now += 60_000  # past round 1's deadline: the resumed round ends, round 2 opens
        second: list[RoundPlan] = []
        while not second:  # the first run's plans (and the poison) come first, from the start
            record = await h.plans.get(5)
            assert record is not None, "the restarted coordinator published no new plan"
            if record.value != GARBAGE and (p := decode(record.value, RoundPlan)).round_id > 1:
                second.append(p)

    assert second[0].round_id == 2  # round 1 taken up and ended despite the poison
    assert origins(await letters(bus)) == [(KAFKA_ROUND_PLANS, 1, "coordinator", "undecodable")]


# -- selector -----------------------------------------------------------------


async def test_selector_dead_letters_poison_plans_and_takes_the_next_plan() -> None:
    async with running(plans=(plan(),)) as h:
        await h.log.publish(KAFKA_ROUND_PLANS, GARBAGE, key=b"digits")
        await h.log.publish(KAFKA_ROUND_PLANS, WRONG, key=b"digits")
        await h.add_plan(plan(round_id=4))
        found = await retained(h.pubsub, plan_topic("digits"))
        stats = dict(h.selectors[0].stats)
        log = h.log

    assert decode(found[plan_topic("digits")].value, RoundPlan).round_id == 4
    assert stats["dead_lettered.undecodable"] == 1 and stats["dead_lettered.unexpected_type"] == 1
    assert origins(await letters(log)) == [
        (KAFKA_ROUND_PLANS, 1, "selector", "undecodable"),
        (KAFKA_ROUND_PLANS, 2, "selector", "unexpected_type"),
    ]


async def test_selector_restarts_over_poison_in_round_plans() -> None:
    async def poison(log: MemoryLog) -> None:
        await log.publish(KAFKA_ROUND_PLANS, GARBAGE, key=b"other")

    async with running(plans=(plan(),), seed=poison) as h:  # a start that rereads the poison
        await until(lambda: h.selectors[0].plans.selecting("digits"))
        found = await retained(h.pubsub, plan_topic("digits"))
        log = h.log

    assert decode(found[plan_topic("digits")].value, RoundPlan).round_id == plan().round_id
    assert origins(await letters(log)) == [(KAFKA_ROUND_PLANS, 1, "selector", "undecodable")]
