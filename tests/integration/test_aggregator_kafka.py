"""The aggregator's restart guarantee against a real Apache Kafka broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

from flbus.kafka import KafkaBus
from tests.support.aggregator import SIZE, SMALL_CHUNKS, World, eventually, weighted_sum

pytestmark = pytest.mark.kafka


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> AsyncIterator[KafkaBus]:
    bus = KafkaBus(kafka_bootstrap, client_id="test-aggregator")
    await bus.start()
    yield bus
    await bus.stop()


@pytest.mark.parametrize("crash", [False, True], ids=["stopped", "crashed"])
async def test_aggregator_kafka_restart_mid_round_counts_each_update_once(
    kafka: KafkaBus, crash: bool
) -> None:
    world = World(kafka, unique=True)
    await world.version(0)
    await world.plan(goal=4)
    rng = np.random.default_rng(3)
    updates = [world.update(f"d{i}", rng.normal(size=SIZE), examples=i + 1) for i in range(4)]
    first = await world.start(catch_up_idle_ms=3_000)
    for u in updates[:2]:
        await world.send(u)
    half = world.chunks(updates[2], SMALL_CHUNKS)
    for data in half[:3]:
        await world.send_raw("d2", data, token=bytes(updates[2].token))
    await eventually(lambda: first.stats().accepted == 2, timeout=30)
    await world.stop(first, crash=crash)

    second = await world.start(catch_up_idle_ms=3_000)
    for data in half[3:]:
        await world.send_raw("d2", data, token=bytes(updates[2].token))
    await world.send(updates[3])
    await eventually(lambda: second.stats().partials == 1, timeout=30)
    await world.stop(second)

    [partial] = await world.partials()
    assert (partial.num_updates, partial.num_examples) == (4, 10)
    np.testing.assert_allclose(partial.tensors.flat, weighted_sum(updates), rtol=1e-6)
    assert second.stats().accepted == 4  # nothing was committed before the partial


async def test_aggregator_kafka_restart_after_publish_does_not_publish_again(
    kafka: KafkaBus,
) -> None:
    world = World(kafka, unique=True)
    await world.version(0)
    await world.plan(goal=2)
    first = await world.start(catch_up_idle_ms=3_000)
    for i in range(2):
        await world.send(world.update(f"d{i}"))
    await eventually(lambda: first.stats().partials == 1, timeout=30)
    await world.stop(first)

    second = await world.start(catch_up_idle_ms=3_000)
    await world.send(world.update("late"))
    await eventually(lambda: second.stats().rejected["closed_round"] == 1, timeout=30)
    await world.stop(second)
    assert second.stats().accepted == 0  # committed offsets: the two updates are not replayed
    assert len(await world.partials()) == 1
