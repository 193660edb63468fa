"""How far the coordinator has read its input topics, and the position it may commit.

The coordinator reads partials, admissions and check-ins in a consumer group.
Every round that is open (or closing) holds the position at which it opened:
the group's committed offsets never pass it, so a coordinator restarted
mid-round reads that round's admissions, check-ins and partials again —
including those published while it was down — and closes or abandons it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from flbus.port import LogSubscription, Record, TopicPartition


class ReadPosition:
    """Per partition: the next offset to read, the holds of open rounds, the last commit."""

    def __init__(self) -> None:
        self._next: dict[TopicPartition, int] = {}
        self._holds: dict[str, dict[TopicPartition, int]] = {}
        self._committed: dict[TopicPartition, int] = {}

    def start(self, tp: TopicPartition, offset: int) -> None:
        """Reading ``tp`` starts at ``offset``: nothing before it is held or re-read."""
        for held in self._holds.values():
            held.setdefault(tp, offset)
        self._next.setdefault(tp, offset)

    def handled(self, record: Record) -> None:
        """Note that ``record`` was handled; a hold that had not seen its partition starts here."""
        for held in self._holds.values():
            held.setdefault(record.tp, record.offset)
        self._next[record.tp] = max(record.offset + 1, self._next.get(record.tp, 0))

    def positions(self) -> dict[TopicPartition, int]:
        """The next offset to handle on each partition whose position is known."""
        return dict(self._next)

    def hold(self, key: str) -> None:
        """Keep the current position (where ``key``'s round opened) uncommitted until released."""
        self._holds[key] = dict(self._next)

    def release(self, key: str) -> None:
        """``key``'s round ended: its records need not be read again."""
        self._holds.pop(key, None)

    def to_commit(self) -> dict[TopicPartition, int]:
        """Offsets that may be committed now and moved since the last commit."""
        target = dict(self._next)
        for held in self._holds.values():
            for tp, offset in held.items():
                target[tp] = min(offset, target.get(tp, offset))
        return {tp: o for tp, o in target.items() if o > self._committed.get(tp, -1)}

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        """Record a successful commit."""
        self._committed.update(offsets)


async def catch_up(
    sub: LogSubscription,
    handle: Callable[[Record], Awaitable[None]],
    idle_ms: int,
    position: ReadPosition,
    assign_timeout_ms: int = 30_000,
) -> int:
    """Hand ``handle`` every record up to the end offsets at start; return how many.

    Waits (up to ``assign_timeout_ms``) for the group to assign partitions: a
    record published before then must not fall between a late assignment and
    its reset to the end. A partition starts at the group's committed offset,
    or is pinned at its end with nothing committed; ``position`` learns where.
    Then stops after ``idle_ms`` without a record, so a silent broker never
    hangs start-up.
    """
    loop = asyncio.get_running_loop()
    give_up = loop.time() + assign_timeout_ms / 1000
    while not sub.assignment() and loop.time() < give_up:
        await asyncio.sleep(0.05)
    ends = await sub.end_offsets() if sub.assignment() else {}
    at: dict[TopicPartition, int] = {}
    for tp, end in ends.items():
        committed = await sub.committed(tp)
        if committed is None:
            await sub.seek(tp, end)  # from now on, fixed before anything is handled
        at[tp] = end if committed is None else committed
        position.start(tp, at[tp])
    count = 0
    deadline = loop.time() + idle_ms / 1000
    while not all(at[tp] >= end for tp, end in ends.items()):
        record = await sub.get(min(0.1, idle_ms / 1000))
        if record is not None:
            at[record.tp] = record.offset + 1
            await handle(record)
            count += 1
            deadline = loop.time() + idle_ms / 1000
        elif loop.time() >= deadline:
            break
    return count
