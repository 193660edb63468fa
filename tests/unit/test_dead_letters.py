"""The dead-letter writer: typed reasons, counts, one log event, bounded bytes and rate."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import structlog

from flbus.errors import BrokerUnavailableError, PublishError
from flbus.memory import MemoryLog
from flbus.port import Published, Record
from flctl.dlq import line, read_dead_letters
from schemas.dead_letter import ORIGINAL_MAX_BYTES, DeadLetter
from schemas.errors import (
    DecodeError,
    DigestMismatchError,
    SchemaVersionError,
    UnknownMessageError,
    ValidationError,
)
from schemas.topics import KAFKA_DEAD_LETTERS, KAFKA_ROUND_PLANS
from services.common.dead_letters import DeadLetters, reason_for

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def record(value: bytes = b"\x00junk", offset: int = 7, topic: str = KAFKA_ROUND_PLANS) -> Record:
    return Record(topic, value, key=b"k1", partition=0, offset=offset, timestamp_ms=123)


async def written(bus: MemoryLog) -> list[DeadLetter]:
    return (await read_dead_letters(bus)).letters


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (DecodeError("x"), "undecodable"),
        (SchemaVersionError("RoundPlan", "9", (1,)), "unsupported_version"),
        (UnknownMessageError("expected RoundPlan, got AuditEvent"), "unexpected_type"),
        (ValidationError("round_id", "must be >= 0"), "invalid"),
        (DigestMismatchError("x"), "bad_chunk"),
        (ValueError("invalid literal for int()"), "handler_error"),
    ],
)
def test_dead_letter_reason_for_each_error_class(exc: Exception, reason: str) -> None:
    assert reason_for(exc) == reason


async def test_dead_letter_written_with_origin_counted_and_logged() -> None:
    bus, clock, counts = MemoryLog(), Clock(), Counter[str]()
    await bus.start()
    dead = DeadLetters(bus, "selector", clock, counts=counts, prefix="dead_lettered.")
    with structlog.testing.capture_logs() as logs:
        assert await dead.send(record(), "undecodable", "DecodeError: not Arrow")

    [letter] = await written(bus)
    assert (letter.origin_topic, letter.origin_partition, letter.origin_offset) == (
        KAFKA_ROUND_PLANS, 0, 7
    )  # fmt: skip
    assert (letter.origin_key, letter.origin_timestamp_ms) == (b"k1", 123)
    assert (letter.role, letter.hospital_id, letter.reason) == ("selector", "", "undecodable")
    assert bytes(letter.original) == b"\x00junk" and letter.original_size == 5
    assert letter.at_ms == clock.now
    assert counts == {"dead_lettered.undecodable": 1}
    [event] = [e for e in logs if e["event"] == "record.dead_lettered"]
    assert (event["topic"], event["partition"], event["offset"]) == (KAFKA_ROUND_PLANS, 0, 7)
    assert event["reason"] == "undecodable" and event["written"] is True
    assert f"{KAFKA_ROUND_PLANS}:0@7  selector  undecodable  5 B" in line(letter)


async def test_dead_letter_carries_at_most_the_bound_of_original_bytes() -> None:
    bus = MemoryLog()
    await bus.start()
    big = bytes(range(256)) * 400  # 100 KiB
    await DeadLetters(bus, "aggregator", Clock(), hospital="h0").send(
        record(big), "undecodable", "x" * 5000
    )
    await DeadLetters(bus, "aggregator", Clock(), max_bytes=10).send(record(big), "invalid", "")

    first, second = await written(bus)
    assert first.original_size == len(big) and bytes(first.original) == big[:ORIGINAL_MAX_BYTES]
    assert len(first.detail) == 1000 and first.hospital_id == "h0"
    assert bytes(second.original) == big[:10]


async def test_dead_letter_flood_is_rate_limited_but_every_record_counted() -> None:
    bus, clock = MemoryLog(), Clock()
    await bus.start()
    dead = DeadLetters(bus, "coordinator", clock, burst=3, per_second=2.0)

    sent = [await dead.send(record(offset=i), "undecodable", "") for i in range(10)]
    clock.now += 500  # refills one
    with structlog.testing.capture_logs() as logs:
        sent += [await dead.send(record(offset=10 + i), "undecodable", "") for i in range(2)]

    assert sent == [True] * 3 + [False] * 7 + [True, False]
    assert [letter.origin_offset for letter in await written(bus)] == [0, 1, 2, 10]
    assert dead.counts == {"undecodable": 12, "suppressed": 8}
    assert [e["suppressed_before"] for e in logs if e.get("written")] == [7]


class FailingLog(MemoryLog):
    async def publish(self, topic: str, value: bytes, **kw: Any) -> Published:
        raise PublishError("record too large")


async def test_dead_letter_write_failure_is_logged_not_raised() -> None:
    bus = FailingLog()
    await bus.start()
    dead = DeadLetters(bus, "selector", Clock())
    with structlog.testing.capture_logs() as logs:
        assert not await dead.send(record(), "undecodable", "")
    assert dead.counts == {"undecodable": 1}
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "record.dead_lettered",
        "dead_letter.write_failed",
    ]


async def test_dead_letter_guard_skips_handler_errors_but_not_broker_failures() -> None:
    bus = MemoryLog()
    await bus.start()
    dead = DeadLetters(bus, "aggregator", Clock())

    async def bad(r: Record) -> None:
        int("²")

    async def broker_down(r: Record) -> None:
        raise BrokerUnavailableError("kafka gone")

    assert not await dead.guard(record(), bad)
    with pytest.raises(BrokerUnavailableError):
        await dead.guard(record(), broker_down)
    [letter] = await written(bus)
    assert letter.reason == "handler_error" and letter.detail.startswith("ValueError")


async def test_dlq_list_filters_by_origin_topic_and_counts_unreadable() -> None:
    bus = MemoryLog()
    await bus.start()
    dead = DeadLetters(bus, "selector", Clock())
    await dead.send(record(topic=KAFKA_ROUND_PLANS), "undecodable", "")
    await dead.send(record(topic="fl.v1.partials.h"), "bad_chunk", "")
    await bus.publish(KAFKA_DEAD_LETTERS, b"not a dead letter")

    only = await read_dead_letters(bus, "fl.v1.partials.h")
    every = await read_dead_letters(bus)

    assert [(d.origin_topic, d.reason) for d in only.letters] == [("fl.v1.partials.h", "bad_chunk")]
    assert len(every.letters) == 2 and every.unreadable == 1
