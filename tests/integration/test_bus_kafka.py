"""KafkaBus against a real Apache Kafka: the log contract plus restarts and limits."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from flbus.errors import BrokerUnavailableError, BusClosedError, PublishError
from flbus.kafka import KafkaBus
from tests.contracts.log import LogContract, unique
from tests.contracts.pubsub import drain

pytestmark = pytest.mark.kafka


class TestKafkaBus(LogContract):
    @pytest.fixture
    async def bus(self, kafka_bootstrap: str) -> AsyncIterator[KafkaBus]:
        bus = KafkaBus(kafka_bootstrap)
        await bus.start()
        yield bus
        await bus.stop()


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_kafka_start_on_dead_bootstrap_raises_broker_unavailable_quickly() -> None:
    bootstrap = f"127.0.0.1:{_dead_port()}"
    bus = KafkaBus(bootstrap, connect_timeout=5)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match=bootstrap):
        await bus.start()
    assert time.monotonic() - started < 8
    with pytest.raises(BusClosedError):
        await bus.publish("x", b"y")


async def test_kafka_restarted_group_consumer_neither_loses_nor_rereads(
    kafka_bootstrap: str,
) -> None:
    topic = unique("restart")
    group = "g-" + uuid.uuid4().hex[:8]
    producer = KafkaBus(kafka_bootstrap)
    await producer.start()
    await producer.create_topic(topic, partitions=3)
    for i in range(12):
        await producer.publish(topic, b"%d" % i, key=b"k%d" % (i % 5))

    # A worker processes and commits record by record, then its process dies.
    worker = KafkaBus(kafka_bootstrap)
    await worker.start()
    sub = await worker.subscribe([topic], group=group)
    seen = []
    for record in await drain(sub, 7, timeout=30):
        seen.append(record.value)
        await sub.commit()
    await worker.stop()

    for i in range(12, 15):  # published while no worker runs
        await producer.publish(topic, b"%d" % i, key=b"k%d" % (i % 5))

    restarted = KafkaBus(kafka_bootstrap)
    await restarted.start()
    sub = await restarted.subscribe([topic], group=group)
    rest = [r.value for r in await drain(sub, 8, timeout=30)]
    assert await sub.get(1.0) is None
    assert sorted(int(v) for v in seen + rest) == list(range(15))
    await restarted.stop()
    await producer.stop()


async def test_kafka_512k_chunk_round_trips_and_oversize_is_refused(
    kafka_bootstrap: str,
) -> None:
    topic = unique("big")
    async with KafkaBus(kafka_bootstrap) as bus:
        chunk = bytes(range(256)) * 2048  # 512 KiB
        meta = await bus.publish(topic, chunk, key=b"u1", headers=(("seq", b"0"),))
        sub = await bus.subscribe([topic])
        [record] = await drain(sub, 1, timeout=20)
        assert record.value == chunk and record.offset == meta.offset
        with pytest.raises(PublishError):
            await bus.publish(topic, b"\0" * (2 * 1024 * 1024))
        await sub.close()
