"""Dead letters on a real Kafka: an aggregator skips poison, ``flctl dlq`` lists and purges it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from flbus.kafka import KafkaBus
from flbus.port import TopicPartition
from flctl.dlq import read_dead_letters
from flctl.main import main
from schemas import AuditEvent, encode
from schemas.topics import updates_topic
from tests.support.aggregator import SIZE, World, eventually

pytestmark = pytest.mark.kafka

GARBAGE = b"\x00\xffnot an arrow stream"


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> AsyncIterator[KafkaBus]:
    bus = KafkaBus(kafka_bootstrap, client_id="test-dead-letters")
    await bus.start()
    yield bus
    await bus.stop()


async def test_aggregator_kafka_dead_letters_poison_then_flctl_lists_and_purges(
    kafka: KafkaBus, kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: an aggregator on a fresh hospital topic.
    world = World(kafka, unique=True)
    topic = updates_topic(world.hospital)
    await world.version(0)
    agg = await world.start(catch_up_idle_ms=3_000)

    # Execute: garbage and a wrong-type message, then a valid update.
    await world.send_raw("bad", GARBAGE)
    await world.send_raw("bad", encode(AuditEvent("x.y", "", -1, "", "", "r", "", 1)))
    await eventually(lambda: sum(agg.stats().dead_lettered.values()) == 2, timeout=30)
    await world.plan(goal=1)
    await world.send(world.update("d1", np.ones(SIZE)))
    await eventually(lambda: agg.stats().partials == 1, timeout=30)
    await world.stop(agg, crash=True)
    group = await kafka.subscribe([topic], group=world.config().consumer_group)
    committed = await group.committed(TopicPartition(topic, 0))
    await group.close()
    capsys.readouterr()  # drop the roles' log lines
    listed = await asyncio.to_thread(
        main, ["dlq", "list", "--kafka-bootstrap", kafka_bootstrap, "--topic", topic]
    )
    out_list = capsys.readouterr().out
    purged = await asyncio.to_thread(main, ["dlq", "purge", "--kafka-bootstrap", kafka_bootstrap])
    out_purge = capsys.readouterr().out
    after = await read_dead_letters(kafka, topic)

    # Assert: the update was folded, the poison skipped, committed past and listed, then gone.
    [partial] = await world.partials()
    assert partial.num_updates == 1
    assert committed is not None and committed >= 2
    assert (listed, purged) == (0, 0)
    lines = out_list.splitlines()
    assert len(lines) == 2
    assert f"{topic}:0@0  aggregator/{world.hospital}  undecodable  {len(GARBAGE)} B" in lines[0]
    assert f"{topic}:0@1  aggregator/{world.hospital}  unexpected_type" in lines[1]
    assert out_purge.startswith("purged ") and "dead letters" in out_purge
    assert after.letters == [] and after.unreadable == 0
