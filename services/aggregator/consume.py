"""Reading helpers over the LogBus port: catch up with a topic, parse header claims."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from flbus.port import LogSubscription, Record, TopicPartition
from schemas._base import is_valid_id

Handler = Callable[[Record], Awaitable[None]]


async def catch_up(sub: LogSubscription, handle: Handler, idle_ms: int) -> int:
    """Hand every record up to the end offsets seen at start to ``handle``; return the count.

    Stops early when no record came for ``idle_ms`` (a group may still be joining,
    or the topic is empty), so start-up never hangs on a silent broker.
    """
    loop = asyncio.get_running_loop()
    idle = idle_ms / 1000
    deadline = loop.time() + idle
    ends: dict[TopicPartition, int] = {}
    at: dict[TopicPartition, int] = {}
    count = 0
    while True:
        if not ends and sub.assignment():
            ends = await sub.end_offsets()
            for tp in ends:
                at[tp] = (await sub.committed(tp)) or 0
        if ends and all(at.get(tp, 0) >= end for tp, end in ends.items()):
            return count
        record = await sub.get(min(0.1, idle))
        if record is not None:
            at[record.tp] = record.offset + 1
            await handle(record)
            count += 1
            deadline = loop.time() + idle
        elif loop.time() >= deadline:
            return count


def header_claims(record: Record) -> tuple[str, int]:
    """(model, round) a record's headers claim; ("", -1) where absent or unusable."""
    raw_model = record.header("model")
    model = raw_model.decode("utf-8", "replace") if raw_model is not None else ""
    raw_round = record.header("round")
    try:
        round_id = int(raw_round) if raw_round is not None else -1
    except ValueError:
        round_id = -1
    return (model if is_valid_id(model) else ""), max(round_id, -1)


def key_id(record: Record) -> str:
    """The record key as an id (updates are keyed by device id), or ""."""
    key = record.key.decode("utf-8", "replace") if record.key else ""
    return key if is_valid_id(key) else ""
