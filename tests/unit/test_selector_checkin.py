"""Selector admission through the composition root on the in-memory buses."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from flbus.memory import MemoryLog, MemoryPubSub
from flbus.port import Record
from flcore.tokens import verify_token
from schemas import AuditEvent, CheckIn, RetryAfter, RoundPlan, Task, decode, encode
from schemas.topics import (
    KAFKA_AUDIT,
    KAFKA_CHECKINS,
    KAFKA_ROUND_PLANS,
    checkin_topic,
    task_topic,
)
from services.selector.app import Selector, build
from services.selector.config import EligibilityPolicy, SelectorConfig

pytestmark = pytest.mark.unit

NOW = 1_700_000_000_000
SECRET = b"selector-test-secret"
CONFIG = SelectorConfig(
    token_secret=SECRET, stats_interval_s=60.0, plan_wait_ms=100, hospitals=("h0", "h1", "h9")
)


class Clock:
    """A pinned millisecond clock."""

    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def plan(**over: Any) -> RoundPlan:
    """A selecting plan for digits over h0 and h1."""
    fields: dict[str, Any] = dict(
        model="digits", round_id=3, base_version=2, state="selecting", local_epochs=1,
        max_steps=0, batch_size=32, learning_rate=0.1, clip_norm=0.0, noise_multiplier=0.0,
        hospitals=("h0", "h1"), targets=(3, 3), admission_probability=1.0,
        over_selection=1.3, min_fraction=0.5, opened_at_ms=NOW - 1_000,
        deadline_ms=NOW + 60_000, reason="",
    )  # fmt: skip
    return RoundPlan(**{**fields, **over})


def checkin(hospital: str = "h0", device: str = "d0", **over: Any) -> CheckIn:
    """An eligible device's check-in for digits."""
    fields: dict[str, Any] = dict(
        device_id=device, hospital_id=hospital, models=("digits",), runtime_version="1.19.2",
        sdk_version="0.1", charging=True, unmetered=True, idle=True, battery_pct=80.0,
        free_memory_mb=512, sent_at_ms=NOW,
    )  # fmt: skip
    return CheckIn(**{**fields, **over})


async def until(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait until ``cond()`` holds."""
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


async def drain(log: MemoryLog, topic: str) -> list[Record]:
    """Every record of ``topic`` so far."""
    sub = await log.subscribe([topic], start="earliest")
    out = []
    while (record := await sub.get(timeout=0.05)) is not None:
        out.append(record)
    await sub.close()
    return out


@dataclass
class Harness:
    """Buses and selector replicas running on them."""

    pubsub: MemoryPubSub
    log: MemoryLog
    selectors: list[Selector]
    clock: Clock

    async def add_plan(self, p: RoundPlan) -> None:
        """Publish a plan and wait until every replica holds it."""
        await self.log.publish(KAFKA_ROUND_PLANS, encode(p), key=p.model.encode())
        await until(lambda: all(s.plans.plans.get(p.model) == p for s in self.selectors))

    async def ask(self, msg: CheckIn, *, topic: str | None = None, answers: int = 1) -> list[Any]:
        """Check in and collect the answers published on the device's task topic."""
        sub = await self.pubsub.subscribe([task_topic(msg.hospital_id, msg.device_id)])
        await self.pubsub.publish(
            topic or checkin_topic(msg.hospital_id, msg.device_id), encode(msg)
        )
        got: list[Any] = []
        while len(got) < answers and (record := await sub.get(timeout=1.0)) is not None:
            got.append(decode(record.value))
        await sub.close()
        return got


@asynccontextmanager
async def running(
    replicas: int = 1,
    config: SelectorConfig = CONFIG,
    plans: tuple[RoundPlan, ...] = (),
    seed: Callable[[MemoryLog], Awaitable[None]] | None = None,
    log_factory: Callable[..., MemoryLog] = MemoryLog,
) -> AsyncIterator[Harness]:
    """Start ``replicas`` selectors on fresh in-memory buses, with ``plans`` already in Kafka."""
    clock = Clock()
    pubsub, log = MemoryPubSub(), log_factory(clock=clock)
    await pubsub.start()
    await log.start()
    for p in plans:
        await log.publish(KAFKA_ROUND_PLANS, encode(p), key=p.model.encode())
    if seed is not None:
        await seed(log)
    selectors = [build(config, pubsub, log, clock) for _ in range(replicas)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop)) for s in selectors]
    try:
        await until(lambda: all(s.ready.is_set() for s in selectors))
        yield Harness(pubsub, log, selectors, clock)
    finally:
        stop.set()
        async with asyncio.timeout(5):
            await asyncio.gather(*tasks)
        await pubsub.stop()
        await log.stop()


async def test_selector_admitted_device_gets_task_with_valid_token() -> None:
    async with running(plans=(plan(),)) as h:
        [task] = await h.ask(checkin("h0", "d7"))
        assert isinstance(task, Task)
        assert (task.model, task.round_id, task.base_version) == ("digits", 3, 2)
        assert (task.batch_size, task.learning_rate, task.deadline_ms) == (32, 0.1, NOW + 60_000)
        claims = dict(model="digits", round_id=3, base_version=2, device_id="d7", hospital_id="h0")
        assert verify_token(task.token, **claims, now_ms=NOW, secret=SECRET) is None  # type: ignore[arg-type]
        [fwd] = await drain(h.log, KAFKA_CHECKINS)
        assert fwd.key == b"d7" and decode(fwd.value, CheckIn).device_id == "d7"
        [rec] = await drain(h.log, KAFKA_AUDIT)
        event = decode(rec.value, AuditEvent)
        assert (event.kind, event.model, event.round_id) == ("device.admitted", "digits", 3)
        assert (event.hospital_id, event.device_id) == ("h0", "d7")


async def test_selector_waits_briefly_for_a_plan_it_has_not_read_yet() -> None:
    # A device can see a plan retained by a faster replica before this one reads it.
    config = dataclasses.replace(CONFIG, plan_wait_ms=2_000)
    async with running(config=config) as h:
        asking = asyncio.create_task(h.ask(checkin("h0", "d3")))
        await asyncio.sleep(0.1)
        await h.log.publish(KAFKA_ROUND_PLANS, encode(plan()), key=b"digits")
        [answer] = await asking
        assert isinstance(answer, Task) and answer.round_id == 3


@pytest.mark.parametrize(
    ("plans", "msg", "reason"),
    [
        ((plan(admission_probability=0.0),), checkin(), "not_selected"),
        ((), checkin(), "no_open_round"),
        ((plan(state="done"),), checkin(), "no_open_round"),
        ((plan(state="training"),), checkin(), "round_in_progress"),
        ((plan(),), checkin(charging=False), "not_eligible"),
        ((plan(),), checkin(hospital="h9"), "hospital_not_in_round"),
        ((plan(deadline_ms=NOW),), checkin(), "selection_closed"),
    ],
)
async def test_selector_declined_device_gets_retry_after_in_future(
    plans: tuple[RoundPlan, ...], msg: CheckIn, reason: str
) -> None:
    async with running(plans=plans) as h:
        [answer] = await h.ask(msg)
        assert isinstance(answer, RetryAfter)
        assert answer.reason == reason and answer.model == "digits"
        assert answer.retry_at_ms > NOW
        assert await drain(h.log, KAFKA_AUDIT) == []  # nobody counted as admitted


async def test_selector_eligibility_policy_is_configurable() -> None:
    lax = dataclasses.replace(CONFIG, eligibility=EligibilityPolicy.parse("none"))
    async with running(config=lax, plans=(plan(),)) as h:
        [answer] = await h.ask(checkin(charging=False, unmetered=False, idle=False))
        assert isinstance(answer, Task)


async def test_selector_answers_each_model_of_a_checkin() -> None:
    async with running(plans=(plan(), plan(model="cancer", admission_probability=0.0))) as h:
        answers = await h.ask(checkin(models=("digits", "cancer")), answers=2)
        by_model = {a.model: type(a) for a in answers}
        assert by_model == {"digits": Task, "cancer": RetryAfter}


async def test_selector_checkin_on_another_devices_topic_is_rejected() -> None:
    async with running(plans=(plan(),)) as h:
        answers = await h.ask(checkin("h0", "d1"), topic=checkin_topic("h0", "d2"))
        assert answers == []
        [rec] = await drain(h.log, KAFKA_AUDIT)
        event = decode(rec.value, AuditEvent)
        assert (event.kind, event.reason, event.device_id) == (
            "message.rejected",
            "topic_mismatch",
            "d2",
        )
        assert await drain(h.log, KAFKA_CHECKINS) == []


async def test_selector_replicas_answer_each_device_exactly_once() -> None:
    async with running(replicas=2, plans=(plan(admission_probability=0.5),)) as h:
        devices = [(f"h{i % 2}", f"d{i}") for i in range(20)]
        subs = {d: await h.pubsub.subscribe([task_topic(*d)]) for d in devices}
        for hospital, device in devices:
            await h.pubsub.publish(
                checkin_topic(hospital, device), encode(checkin(hospital, device))
            )
        await until(lambda: sum(s.stats["device.messages"] for s in h.selectors) == 20)
        for sub in subs.values():
            assert await sub.get(timeout=1.0) is not None
            assert await sub.get(timeout=0.05) is None
        assert all(s.stats["device.messages"] > 0 for s in h.selectors)
        admitted = [decode(r.value, AuditEvent) for r in await drain(h.log, KAFKA_AUDIT)]
        assert len(admitted) == len({e.device_id for e in admitted}) > 0


async def test_selector_answer_is_the_same_from_either_replica() -> None:
    async with running(replicas=2, plans=(plan(admission_probability=0.5),)) as h:
        for i in range(6):
            msg = checkin("h1", f"d{i}")
            sub = await h.pubsub.subscribe([task_topic("h1", f"d{i}")])
            await h.pubsub.publish(checkin_topic("h1", f"d{i}"), encode(msg))
            await h.pubsub.publish(checkin_topic("h1", f"d{i}"), encode(msg))
            first, second = await sub.get(timeout=1.0), await sub.get(timeout=1.0)
            assert first is not None and second is not None
            assert first.value == second.value
            await sub.close()
        assert [s.stats["device.messages"] for s in h.selectors] == [6, 6]


async def test_selector_newer_plan_wins_and_older_round_is_ignored() -> None:
    async with running(plans=(plan(round_id=4),)) as h:
        await h.log.publish(
            KAFKA_ROUND_PLANS, encode(plan(round_id=3, state="done")), key=b"digits"
        )
        await h.add_plan(plan(round_id=5, admission_probability=1.0))
        [task] = await h.ask(checkin())
        assert isinstance(task, Task) and task.round_id == 5
