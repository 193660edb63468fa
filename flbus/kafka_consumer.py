"""One aiokafka consumer behind the ``LogSubscription`` port (see ``flbus.kafka``)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaTP
from aiokafka.structs import ConsumerRecord

from flbus.errors import BusClosedError, BusError
from flbus.kafka_errors import mapped, quietly
from flbus.port import LogSubscription, Record, TopicPartition

log = structlog.get_logger("flbus.kafka")


async def all_partitions(producer: AIOKafkaProducer, topics: Sequence[str]) -> list[KafkaTP]:
    """Every partition of ``topics`` (the producer waits for a new topic's metadata)."""
    out: list[KafkaTP] = []
    for topic in topics:
        partitions = await producer.partitions_for(topic)
        out.extend(KafkaTP(topic, p) for p in sorted(partitions))
    return out


def _to_record(r: ConsumerRecord[bytes, bytes]) -> Record:
    return Record(
        topic=r.topic,
        value=r.value if r.value is not None else b"",
        key=r.key,
        headers=tuple(r.headers) if r.headers else (),
        partition=r.partition,
        offset=r.offset,
        timestamp_ms=r.timestamp,
    )


class KafkaSubscription(LogSubscription, ConsumerRebalanceListener):  # type: ignore[misc]
    """One aiokafka consumer behind the LogSubscription port."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        group: str | None,
        on_close: Callable[[KafkaSubscription], None],
    ) -> None:
        self._on_close = on_close
        self._consumer = consumer
        self._group = group
        self._buf: deque[ConsumerRecord[bytes, bytes]] = deque()
        self._delivered: dict[tuple[str, int], int] = {}  # (topic, partition) -> offset
        self._closed = False

    # ConsumerRebalanceListener: drop what belongs to partitions we lost, so a
    # record is never handed out (or committed) by two members of the group.
    def on_partitions_revoked(self, revoked: Any) -> None:
        lost = {TopicPartition(tp.topic, tp.partition) for tp in revoked}
        self._buf = deque(r for r in self._buf if TopicPartition(r.topic, r.partition) not in lost)
        for tp in lost:
            self._delivered.pop((tp.topic, tp.partition), None)

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.debug("kafka.assigned", group=self._group, partitions=len(assigned))

    def _check(self) -> AIOKafkaConsumer:
        if self._closed:
            raise BusClosedError("subscription closed")
        return self._consumer

    async def get(self, timeout: float | None = None) -> Record | None:
        """The next record (from the last fetched batch when there is one)."""
        consumer = self._check()
        if not self._buf:
            loop = asyncio.get_running_loop()
            deadline = None if timeout is None else loop.time() + timeout
            while not self._buf:
                remaining = 1.0 if deadline is None else min(1.0, deadline - loop.time())
                with mapped("fetch"):
                    batch = await consumer.getmany(timeout_ms=max(0, int(remaining * 1000)))
                self._check()
                for records in batch.values():
                    self._buf.extend(records)
                if not self._buf and deadline is not None and loop.time() >= deadline:
                    return None
        r = self._buf.popleft()
        self._delivered[(r.topic, r.partition)] = r.offset
        return _to_record(r)

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this consumer holds now."""
        if self._closed:
            return frozenset()
        return frozenset(
            TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()
        )

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit ``offsets`` (next offset to read), or after the last record ``get`` returned."""
        consumer = self._check()
        if self._group is None:
            raise BusError("commit needs a consumer group")
        if offsets is None:
            offsets = {TopicPartition(t, p): o + 1 for (t, p), o in self._delivered.items()}
        if not offsets:
            return
        with mapped(f"commit for group {self._group!r}"):
            await consumer.commit({KafkaTP(tp.topic, tp.partition): o for tp, o in offsets.items()})

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset of ``tp`` (None without a group or commit)."""
        consumer = self._check()
        if self._group is None:
            return None
        with mapped(f"committed offset of {tp}"):
            offset = await consumer.committed(KafkaTP(tp.topic, tp.partition))
        return None if offset is None or offset < 0 else int(offset)

    def _forget_buffered(self, tps: set[TopicPartition] | None = None) -> None:
        if tps is None:
            self._buf.clear()
        else:
            self._buf = deque(
                r for r in self._buf if TopicPartition(r.topic, r.partition) not in tps
            )

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        """Make the next ``get`` on ``tp`` return the record at ``offset``."""
        consumer = self._check()
        ktp = KafkaTP(tp.topic, tp.partition)
        if ktp not in consumer.assignment():
            raise BusError(f"{tp} is not assigned to this subscriber")
        with mapped(f"seek {tp}"):
            consumer.seek(ktp, max(0, offset))
        self._forget_buffered({tp})

    async def seek_to_time(self, timestamp_ms: int) -> None:
        """Seek every assigned partition to its first record at or after ``timestamp_ms``."""
        consumer = self._check()
        tps = list(consumer.assignment())
        if not tps:
            return
        with mapped("seek to time"):
            found = await consumer.offsets_for_times({tp: timestamp_ms for tp in tps})
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                hit = found.get(tp)
                consumer.seek(tp, hit.offset if hit is not None else ends[tp])
        self._forget_buffered()

    async def end_offsets(self) -> dict[TopicPartition, int]:
        """The next offset of each assigned partition (its high watermark)."""
        consumer = self._check()
        tps = list(consumer.assignment())
        if not tps:
            return {}
        with mapped("end offsets"):
            ends = await consumer.end_offsets(tps)
        return {TopicPartition(tp.topic, tp.partition): int(o) for tp, o in ends.items()}

    async def close(self) -> None:
        """Leave the group (its partitions go to the other members) and disconnect."""
        if self._closed:
            return
        self._closed = True
        self._buf.clear()
        self._on_close(self)
        await quietly(self._consumer.stop())
