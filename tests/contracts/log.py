"""The contract every LogBus keeps: run against MemoryLog and Apache Kafka.

A subclass provides the ``bus`` fixture (a started bus).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from flbus.errors import BusError, TopicError
from flbus.port import LogBus, LogSubscription, Record, TopicPartition
from tests.contracts.pubsub import drain


def unique(prefix: str = "t") -> str:
    """A topic no other test run uses."""
    return f"contract.{prefix}-{uuid.uuid4().hex[:10]}"


async def wait_assigned(sub: LogSubscription, n: int, timeout: float = 20.0) -> None:
    """Wait until the subscriber holds ``n`` partitions (group joins take time on Kafka)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(sub.assignment()) != n:
        if loop.time() > deadline:
            pytest.fail(f"assignment stayed {sorted(sub.assignment(), key=str)}, wanted {n}")
        await sub.get(0.1)  # lets the consumer take part in the group protocol
    return None


class LogContract:
    """Behaviour the service plane relies on."""

    async def test_records_keep_order_key_headers_and_offsets(self, bus: LogBus) -> None:
        topic = unique()
        await bus.create_topic(topic, partitions=1)
        offsets = []
        for i in range(5):
            meta = await bus.publish(topic, f"v{i}".encode(), key=b"k", headers=(("i", b"%d" % i),))
            offsets.append(meta.offset)
        assert offsets == sorted(offsets) and len(set(offsets)) == 5
        sub = await bus.subscribe([topic], start="earliest")
        records = await drain(sub, 5, timeout=20)
        assert [r.value for r in records] == [b"v0", b"v1", b"v2", b"v3", b"v4"]
        assert [r.offset for r in records] == offsets
        assert all(r.key == b"k" for r in records)
        assert records[3].header("i") == b"3"
        assert all(r.timestamp_ms > 0 for r in records)
        await sub.close()

    async def test_same_key_same_partition(self, bus: LogBus) -> None:
        topic = unique()
        await bus.create_topic(topic, partitions=4)
        parts = {(await bus.publish(topic, b"x", key=b"hospital-7")).partition for _ in range(10)}
        assert len(parts) == 1
        spread = {(await bus.publish(topic, b"x", key=b"d%d" % i)).partition for i in range(40)}
        assert len(spread) > 1

    async def test_group_resumes_after_committed_offset(self, bus: LogBus) -> None:
        topic = unique()
        group = "g-" + uuid.uuid4().hex[:8]
        await bus.create_topic(topic)
        for i in range(6):
            await bus.publish(topic, b"%d" % i)
        first = await bus.subscribe([topic], group=group)
        got = await drain(first, 4, timeout=30)
        await first.commit()
        await first.close()
        second = await bus.subscribe([topic], group=group)
        rest = await drain(second, 2, timeout=30)
        assert [r.value for r in got + rest] == [b"%d" % i for i in range(6)]
        assert await second.get(0.5) is None
        await second.close()

    async def test_uncommitted_records_are_redelivered(self, bus: LogBus) -> None:
        topic = unique()
        group = "g-" + uuid.uuid4().hex[:8]
        await bus.create_topic(topic)
        for i in range(3):
            await bus.publish(topic, b"%d" % i)
        first = await bus.subscribe([topic], group=group)
        await drain(first, 3, timeout=30)
        await first.commit({TopicPartition(topic, 0): 1})
        await first.close()
        second = await bus.subscribe([topic], group=group)
        again = await drain(second, 2, timeout=30)
        assert [r.value for r in again] == [b"1", b"2"]
        assert await second.committed(TopicPartition(topic, 0)) == 1
        await second.close()

    async def test_group_members_split_partitions(self, bus: LogBus) -> None:
        topic = unique()
        group = "g-" + uuid.uuid4().hex[:8]
        await bus.create_topic(topic, partitions=4)
        a = await bus.subscribe([topic], group=group)
        await wait_assigned(a, 4)
        b = await bus.subscribe([topic], group=group)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not (len(a.assignment()) == 2 and len(b.assignment()) == 2):
            assert loop.time() < deadline, (a.assignment(), b.assignment())
            await asyncio.gather(a.get(0.1), b.get(0.1))
        assert a.assignment().isdisjoint(b.assignment())
        await a.close()
        await b.close()

    async def test_seek_rereads_and_seek_to_time_skips_older(self, bus: LogBus) -> None:
        topic = unique()
        await bus.create_topic(topic)
        for i in range(3):
            await bus.publish(topic, b"old%d" % i)
        await asyncio.sleep(0.05)
        sub = await bus.subscribe([topic])
        old = await drain(sub, 3, timeout=20)
        cut = old[-1].timestamp_ms + 1
        await asyncio.sleep(0.05)
        await bus.publish(topic, b"new")
        await drain(sub, 1, timeout=20)
        await sub.seek(TopicPartition(topic, 0), 1)
        again = await drain(sub, 3, timeout=20)
        assert [r.value for r in again] == [b"old1", b"old2", b"new"]
        await sub.seek_to_time(cut)
        [newest] = await drain(sub, 1, timeout=20)
        assert newest.value == b"new"
        ends = await sub.end_offsets()
        assert ends[TopicPartition(topic, 0)] == newest.offset + 1
        await sub.close()

    async def test_latest_start_skips_existing_records(self, bus: LogBus) -> None:
        topic = unique()
        await bus.create_topic(topic)
        await bus.publish(topic, b"before")
        sub = await bus.subscribe([topic], start="latest")
        await wait_assigned(sub, 1)
        await bus.publish(topic, b"after")
        records: list[Record] = await drain(sub, 1, timeout=20)
        assert records[0].value == b"after"
        await sub.close()

    async def test_commit_without_group_is_refused(self, bus: LogBus) -> None:
        topic = unique()
        await bus.create_topic(topic)
        sub = await bus.subscribe([topic])
        with pytest.raises(BusError):
            await sub.commit()
        await sub.close()

    async def test_create_topic_is_idempotent_and_compaction_accepted(self, bus: LogBus) -> None:
        topic = unique()
        await bus.create_topic(topic, partitions=2, compacted=True)
        await bus.create_topic(topic, partitions=2, compacted=True)
        meta = await bus.publish(topic, b"plan", key=b"digits_mlp")
        assert meta.partition in (0, 1)

    async def test_commit_covers_only_records_get_returned(self, bus: LogBus) -> None:
        topic = unique()
        group = "g-" + uuid.uuid4().hex[:8]
        await bus.create_topic(topic)
        for i in range(10):
            await bus.publish(topic, b"%d" % i)
        sub = await bus.subscribe([topic], group=group)
        await drain(sub, 3, timeout=30)  # a fetch may bring all ten; three were handed out
        await sub.commit()
        assert await sub.committed(TopicPartition(topic, 0)) == 3
        await sub.close()

    async def test_publish_to_missing_partition_is_refused(self, bus: LogBus) -> None:
        topic = unique()
        await bus.create_topic(topic, partitions=2)
        with pytest.raises(TopicError):
            await bus.publish(topic, b"x", partition=2)
