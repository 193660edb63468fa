"""The in-memory bus: a complete in-process implementation of both ports.

Not a mock. :class:`MemoryLog` keeps partitioned logs with offsets, consumer
groups with rebalancing, committed offsets and seeking; :class:`MemoryPubSub`
has MQTT filters, retained messages and shared subscriptions. The demo's
one-process mode runs on it, and the contract suite holds it to the same
behaviour as Kafka and Mosquitto.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from flbus.errors import BusClosedError, BusError, TopicError
from flbus.mqtt_match import FilterIndex, check_filter, check_topic, matches
from flbus.partitioner import partition_for
from flbus.port import (
    Headers,
    LogBus,
    LogSubscription,
    Published,
    PubSubBus,
    Record,
    Start,
    Subscription,
    TopicPartition,
)
from flproc.clock import wall_ms


async def _wait(event: asyncio.Event, timeout: float | None) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


class MemoryLog(LogBus):
    """Kafka semantics in process: partitions, offsets, groups, commits, seeks."""

    def __init__(self, *, clock: Callable[[], int] = wall_ms) -> None:
        self._clock = clock
        self._logs: dict[str, list[list[Record]]] = {}
        self._compacted: set[str] = set()
        self._committed: dict[tuple[str, TopicPartition], int] = {}
        self._groups: dict[str, list[_LogSub]] = {}
        self._subs: list[_LogSub] = []
        self._round_robin = itertools.count()
        self._started = False

    async def start(self) -> None:
        """Open the bus (no broker to reach)."""
        self._started = True

    async def stop(self) -> None:
        """Close every subscription; the logs themselves are kept."""
        self._started = False
        for sub in list(self._subs):
            await sub.close()

    def _check(self) -> None:
        if not self._started:
            raise BusClosedError("the in-memory log bus is not started")

    async def create_topic(
        self, name: str, *, partitions: int = 1, compacted: bool = False
    ) -> None:
        """Create ``name`` with ``partitions`` partitions if it does not exist."""
        self._check()
        if not name or partitions < 1:
            raise TopicError(f"bad topic {name!r} or partition count {partitions}")
        if name in self._logs:
            return
        self._logs[name] = [[] for _ in range(partitions)]
        if compacted:
            self._compacted.add(name)
        self._reassign(name)

    async def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        partition: int | None = None,
    ) -> Published:
        """Append one record; partitioned by key like Kafka's default partitioner."""
        self._check()
        if topic not in self._logs:
            await self.create_topic(topic)
        parts = self._logs[topic]
        if partition is None:
            if key is not None:
                partition = partition_for(key, len(parts))
            else:
                partition = next(self._round_robin) % len(parts)
        if not 0 <= partition < len(parts):
            raise TopicError(f"{topic} has no partition {partition}")
        log = parts[partition]
        record = Record(
            topic=topic,
            value=bytes(value),
            key=key,
            headers=tuple(headers),
            partition=partition,
            offset=len(log),
            timestamp_ms=self._clock(),
        )
        log.append(record)
        for sub in self._subs:
            if topic in sub.topics:
                sub.wake.set()
        return Published(topic, partition, record.offset)

    async def subscribe(
        self, topics: Sequence[str], *, group: str | None = None, start: Start = "earliest"
    ) -> LogSubscription:
        """Read ``topics``, alone or as a member of ``group``."""
        self._check()
        sub = _LogSub(self, tuple(topics), group, start)
        self._subs.append(sub)
        if group is not None:
            self._groups.setdefault(group, []).append(sub)
        for topic in topics:
            if topic not in self._logs:
                await self.create_topic(topic)
        self._rebalance(sub)
        return sub

    # -- internals -----------------------------------------------------------

    def _partitions(self, topics: Sequence[str]) -> list[TopicPartition]:
        return [
            TopicPartition(t, p)
            for t in sorted(set(topics))
            for p in range(len(self._logs.get(t, [])))
        ]

    def _reassign(self, topic: str) -> None:
        for sub in list(self._subs):
            if topic in sub.topics:
                self._rebalance(sub)

    def _rebalance(self, sub: _LogSub) -> None:
        if sub.group is None:
            sub.assign(self._partitions(sub.topics))
            return
        members = self._groups.get(sub.group, [])
        for i, member in enumerate(members):
            tps = self._partitions(member.topics)
            member.assign([tp for j, tp in enumerate(tps) if j % len(members) == i])

    def _leave(self, sub: _LogSub) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
        if sub.group is not None and sub in self._groups.get(sub.group, []):
            self._groups[sub.group].remove(sub)
            if self._groups[sub.group]:
                self._rebalance(self._groups[sub.group][0])

    def _start_offset(self, sub: _LogSub, tp: TopicPartition) -> int:
        if sub.group is not None and (sub.group, tp) in self._committed:
            return self._committed[(sub.group, tp)]
        return 0 if sub.start == "earliest" else len(self._logs[tp.topic][tp.partition])


@dataclass(eq=False)
class _LogSub(LogSubscription):
    bus: MemoryLog
    topics: tuple[str, ...]
    group: str | None
    start: Start
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    delivered: dict[TopicPartition, int] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    cursor: int = 0

    def assign(self, tps: list[TopicPartition]) -> None:
        self.positions = {
            tp: self.positions.get(tp, self.bus._start_offset(self, tp)) for tp in tps
        }
        self.delivered = {tp: o for tp, o in self.delivered.items() if tp in self.positions}
        self.wake.set()

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self.positions)

    def _poll(self) -> Record | None:
        tps = list(self.positions)
        for i in range(len(tps)):
            tp = tps[(self.cursor + i) % len(tps)]
            log = self.bus._logs[tp.topic][tp.partition]
            pos = self.positions[tp]
            if pos < len(log):
                self.positions[tp] = pos + 1
                self.delivered[tp] = pos
                self.cursor = (self.cursor + i + 1) % len(tps)
                return log[pos]
        return None

    async def get(self, timeout: float | None = None) -> Record | None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self.closed:
                raise BusClosedError("subscription closed")
            self.wake.clear()
            record = self._poll()
            if record is not None:
                return record
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            await _wait(self.wake, remaining)

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        if self.group is None:
            raise BusError("commit needs a consumer group")
        if offsets is None:
            offsets = {tp: o + 1 for tp, o in self.delivered.items()}
        for tp, offset in offsets.items():
            self.bus._committed[(self.group, tp)] = offset

    async def committed(self, tp: TopicPartition) -> int | None:
        if self.group is None:
            return None
        return self.bus._committed.get((self.group, tp))

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self.positions:
            raise BusError(f"{tp} is not assigned to this subscriber")
        self.positions[tp] = max(0, offset)
        self.wake.set()

    async def seek_to_time(self, timestamp_ms: int) -> None:
        for tp in self.positions:
            log = self.bus._logs[tp.topic][tp.partition]
            self.positions[tp] = next(
                (r.offset for r in log if r.timestamp_ms >= timestamp_ms), len(log)
            )
        self.wake.set()

    async def end_offsets(self) -> dict[TopicPartition, int]:
        return {tp: len(self.bus._logs[tp.topic][tp.partition]) for tp in self.positions}

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.bus._leave(self)
            self.wake.set()


class MemoryPubSub(PubSubBus):
    """MQTT v5 semantics in process: filters, retained messages, shared groups."""

    def __init__(self) -> None:
        self._subs: dict[_PubSubSub, None] = {}  # every open subscription, in order
        # Dispatch never scans every subscription: the index finds the matching
        # filters, and each filter knows its subscriptions (in subscription order).
        self._index = FilterIndex()
        self._by_filter: dict[str, dict[_PubSubSub, None]] = {}
        self._seq = itertools.count()
        self._retained: dict[str, Record] = {}
        self._share_turn: dict[tuple[str, str], int] = {}
        self._started = False

    async def start(self) -> None:
        """Open the bus (no broker to reach)."""
        self._started = True

    async def stop(self) -> None:
        """Close every subscription; retained messages are kept."""
        self._started = False
        for sub in list(self._subs):
            await sub.close()

    async def publish(
        self, topic: str, value: bytes, *, headers: Headers = (), retain: bool = False
    ) -> None:
        """Deliver to every matching subscriber, one member per shared group."""
        if not self._started:
            raise BusClosedError("the in-memory pub/sub bus is not started")
        check_topic(topic)
        record = Record(topic=topic, value=bytes(value), headers=tuple(headers))
        if retain:
            if value:
                self._retained[topic] = Record(
                    topic=topic, value=record.value, headers=record.headers, retained=True
                )
            else:
                self._retained.pop(topic, None)
        chosen: dict[_PubSubSub, str] = {}  # each subscriber once, by its first matching filter
        for flt in self._index.match(topic):
            for sub in self._by_filter[flt]:
                prev = chosen.get(sub)
                if prev is None or sub.rank[flt] < sub.rank[prev]:
                    chosen[sub] = flt
        shared: dict[tuple[str, str], list[_PubSubSub]] = {}
        for sub, flt in chosen.items():
            if sub.share_group is None:
                sub.queue.put_nowait(record)
            else:
                shared.setdefault((sub.share_group, flt), []).append(sub)
        for group_key, members in shared.items():
            members.sort(key=lambda m: m.seq)  # round-robin in subscription order
            turn = self._share_turn.get(group_key, 0)
            members[turn % len(members)].queue.put_nowait(record)
            self._share_turn[group_key] = turn + 1

    async def subscribe(
        self, topic_filters: Sequence[str], *, share_group: str | None = None
    ) -> Subscription:
        """Subscribe; retained messages first (not for shared subscriptions, as in MQTT v5)."""
        if not self._started:
            raise BusClosedError("the in-memory pub/sub bus is not started")
        for flt in topic_filters:
            check_filter(flt)
        sub = _PubSubSub(self, tuple(topic_filters), share_group, next(self._seq))
        if share_group is None:
            for topic, record in self._retained.items():
                if any(matches(f, topic) for f in sub.filters):
                    sub.queue.put_nowait(record)
        self._subs[sub] = None
        for flt in sub.rank:
            self._index.add(flt)
            self._by_filter.setdefault(flt, {})[sub] = None
        return sub

    def _unsubscribe(self, sub: _PubSubSub) -> None:
        if sub not in self._subs:
            return
        del self._subs[sub]
        for flt in sub.rank:
            self._index.discard(flt)
            subs = self._by_filter[flt]
            del subs[sub]
            if not subs:
                del self._by_filter[flt]


@dataclass(eq=False)
class _PubSubSub(Subscription):
    bus: MemoryPubSub
    filters: tuple[str, ...]
    share_group: str | None
    seq: int
    queue: asyncio.Queue[Record | None] = field(default_factory=asyncio.Queue)
    closed: bool = False
    rank: dict[str, int] = field(init=False)  # each distinct filter's first position

    def __post_init__(self) -> None:
        self.rank = {}
        for i, flt in enumerate(self.filters):
            self.rank.setdefault(flt, i)

    async def get(self, timeout: float | None = None) -> Record | None:
        if self.closed:
            raise BusClosedError("subscription closed")
        try:
            record = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None
        if record is None:
            raise BusClosedError("subscription closed")
        return record

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.bus._unsubscribe(self)
            self.queue.put_nowait(None)


class MemoryBus:
    """Both planes in one process: ``.pubsub`` (device plane) and ``.log`` (service plane)."""

    def __init__(self, *, clock: Callable[[], int] = wall_ms) -> None:
        self.pubsub = MemoryPubSub()
        self.log = MemoryLog(clock=clock)

    async def start(self) -> None:
        """Open both planes."""
        await self.pubsub.start()
        await self.log.start()

    async def stop(self) -> None:
        """Close both planes."""
        await self.pubsub.stop()
        await self.log.stop()
