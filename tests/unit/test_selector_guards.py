"""Selector limits and parking on the in-memory buses: what a device can make a replica do."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from flbus.memory import MemoryLog
from schemas import AuditEvent, RetryAfter, Task, decode, encode
from schemas.headers import upload_headers
from schemas.topics import (
    KAFKA_AUDIT,
    KAFKA_CHECKINS,
    KAFKA_ROUND_PLANS,
    checkin_topic,
    task_topic,
    upload_topic,
)
from tests.support.forge import forged
from tests.unit.test_selector_checkin import CONFIG, NOW, checkin, drain, plan, running, until
from tests.unit.test_selector_uploads import token, update_chunks

pytestmark = pytest.mark.unit


async def test_selector_parked_checkin_answered_when_plan_arrives_and_uploads_pass_it() -> None:
    config = dataclasses.replace(CONFIG, plan_wait_ms=10_000, workers=1)
    async with running(config=config) as h:
        answers = await h.pubsub.subscribe([task_topic("h0", "d3")])
        await h.pubsub.publish("fl/v1/h0/d3/checkin", encode(checkin("h0", "d3")))
        await until(lambda: h.selectors[0].stats["checkin.parked"] == 1)
        # The only worker is free: an upload behind the parked check-in is bridged at once.
        headers = upload_headers(token(), "digits", 3, 2)
        chunks = update_chunks()
        for data in chunks:
            await h.pubsub.publish(upload_topic("h0", "d1"), data, headers=headers)
        await until(lambda: h.selectors[0].stats["update_chunk"] == len(chunks), timeout=1.0)
        assert h.selectors[0].stats["task"] + h.selectors[0].stats["retry_after"] == 0
        await h.log.publish(KAFKA_ROUND_PLANS, encode(plan()), key=b"digits")
        record = await answers.get(timeout=1.0)  # well before the 10 s wait is over
        assert record is not None and isinstance(decode(record.value), Task)


async def test_selector_full_parking_gives_a_short_retry_not_half_a_minute() -> None:
    config = dataclasses.replace(CONFIG, park_max=1)
    async with running(config=config) as h:
        await h.pubsub.publish("fl/v1/h0/d1/checkin", encode(checkin("h0", "d1")))
        await until(lambda: h.selectors[0].stats["checkin.parked"] == 1)
        [answer] = await h.ask(checkin("h0", "d2"))
        assert isinstance(answer, RetryAfter) and answer.reason == "plan_pending"
        assert NOW < answer.retry_at_ms <= NOW + config.min_backoff_ms + config.plan_wait_ms


async def test_selector_checkin_over_its_model_limit_is_one_refusal() -> None:
    models = tuple(f"m{i}" for i in range(CONFIG.max_models_per_checkin + 1))
    async with running(plans=(plan(),)) as h:
        answers = await h.pubsub.subscribe([task_topic("h0", "d0")])
        await h.pubsub.publish(checkin_topic("h0", "d0"), encode(checkin(models=models)))
        await until(lambda: h.selectors[0].stats["message.rejected:too_many_models"] == 1)
        assert await answers.get(timeout=0.1) is None
        assert h.selectors[0].stats["retry_after"] == 0
        assert await drain(h.log, KAFKA_CHECKINS) == []
        [event] = [decode(r.value, AuditEvent) for r in await drain(h.log, KAFKA_AUDIT)]
        assert event.reason == "too_many_models"


async def test_selector_checkin_listing_100000_models_is_one_refusal() -> None:
    wire = forged(checkin(), models=tuple(f"m{i}" for i in range(100_000)))
    async with running(plans=(plan(),)) as h:
        answers = await h.pubsub.subscribe([task_topic("h0", "d0")])
        await h.pubsub.publish(checkin_topic("h0", "d0"), wire)
        await until(lambda: h.selectors[0].stats["message.rejected:ValidationError"] == 1)
        assert await answers.get(timeout=0.1) is None
        assert h.selectors[0].stats["retry_after"] == 0
        assert await drain(h.log, KAFKA_CHECKINS) == []
        [event] = [decode(r.value, AuditEvent) for r in await drain(h.log, KAFKA_AUDIT)]
        assert event.detail == "CheckIn.models: at most 64 items, got 100,000"


async def test_selector_checkin_with_huge_text_is_not_forwarded() -> None:
    async with running(plans=(plan(),)) as h:
        await h.pubsub.publish(
            checkin_topic("h0", "d0"), forged(checkin(), sdk_version="x" * 100_000)
        )
        await until(lambda: h.selectors[0].stats["message.rejected:ValidationError"] == 1)
        assert await drain(h.log, KAFKA_CHECKINS) == []


async def test_selector_flood_from_one_identity_is_admitted_once() -> None:
    async with running(plans=(plan(),)) as h:
        answers = await h.pubsub.subscribe([task_topic("h0", "d1")])
        for _ in range(200):
            await h.pubsub.publish("fl/v1/h0/d1/checkin", encode(checkin("h0", "d1")))
        await until(lambda: h.selectors[0].stats["device.messages"] == 200)
        await until(lambda: h.selectors[0].stats["checkin.rejected:rate_limited"] == 199)
        assert h.selectors[0].stats["task"] == 1
        assert len(await drain(h.log, KAFKA_CHECKINS)) == 1
        events = [decode(r.value, AuditEvent) for r in await drain(h.log, KAFKA_AUDIT)]
        assert sorted(e.kind for e in events) == ["checkin.rejected", "device.admitted"]
        first = await answers.get(timeout=1.0)
        assert first is not None and isinstance(decode(first.value), Task)
        h.clock.now += CONFIG.checkin_interval_ms  # an honest device coming back later is heard
        [again] = await h.ask(checkin("h0", "d1"))
        assert isinstance(again, Task)


async def test_selector_device_checking_in_for_the_next_round_at_once_is_heard() -> None:
    async with running(plans=(plan(round_id=3),)) as h:
        [first] = await h.ask(checkin("h0", "d1"))
        await h.add_plan(plan(round_id=4))  # a short round: the next opens within the interval

        [again] = await h.ask(checkin("h0", "d1"))

        assert isinstance(first, Task) and isinstance(again, Task)
        assert again.round_id == 4
        assert h.selectors[0].stats["checkin.rejected:rate_limited"] == 0


class _StuckLog(MemoryLog):
    """A log bus whose appends to the check-in topic never complete (a hung broker link)."""

    async def publish(self, topic: str, value: bytes, **kw: object):  # type: ignore[no-untyped-def,override]
        if topic == KAFKA_CHECKINS:
            await asyncio.Event().wait()
        return await super().publish(topic, value, **kw)  # type: ignore[arg-type]


async def test_selector_health_reports_a_stalled_worker() -> None:
    config = dataclasses.replace(CONFIG, stall_s=0.2, workers=1)
    async with running(config=config, plans=(plan(),), log_factory=_StuckLog) as h:
        sel = h.selectors[0]
        assert sel.problem() is None
        for device in ("d1", "d2"):
            await h.pubsub.publish(f"fl/v1/h0/{device}/checkin", encode(checkin("h0", device)))
        await until(lambda: sel.problem() is not None, timeout=2.0)
        assert "device messages" in (sel.problem() or "")


async def test_selector_rate_limit_lets_a_device_check_in_for_each_model_in_turn() -> None:
    plans = (plan(), plan(model="other"))
    async with running(plans=plans) as h:
        [first] = await h.ask(checkin("h0", "d1", models=("digits",)))
        [second] = await h.ask(checkin("h0", "d1", models=("other",)))
        assert isinstance(first, Task) and isinstance(second, Task)
        [again] = await h.ask(checkin("h0", "d1", models=("digits",)))
        assert isinstance(again, RetryAfter) and again.reason == "rate_limited"
        assert again.retry_at_ms == NOW + CONFIG.checkin_interval_ms
