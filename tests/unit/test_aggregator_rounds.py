"""The aggregator publishes one correct partial per round: on goal, on deadline, on a new plan."""

from __future__ import annotations

import numpy as np
import pytest

from flbus.port import TopicPartition
from flcore.aggregation import FOLD_BATCH
from schemas import ModelUpdate
from schemas.chunking import decode_chunked
from schemas.topics import updates_topic
from tests.support.aggregator import SIZE, SMALL_CHUNKS, T0, World, eventually, weighted_sum

pytestmark = pytest.mark.unit


async def _ready(world: World, goal: int = 3, **plan: object) -> None:
    await world.bus.start()
    await world.version(0)
    await world.plan(goal=goal, **plan)  # type: ignore[arg-type]


async def test_aggregator_goal_met_publishes_one_partial_with_weighted_sum() -> None:
    world = World()
    await _ready(world, goal=3)
    rng = np.random.default_rng(0)
    updates = [
        world.update(f"d{i}", rng.normal(size=SIZE), examples=10 * (i + 1), loss=0.1 * i)
        for i in range(3)
    ]
    agg = await world.start()
    for u in updates:
        await world.send(u)
    await eventually(lambda: agg.stats().partials == 1)
    await world.send(world.update("late"))  # after the goal: closed round, not a 2nd partial
    await eventually(lambda: agg.stats().rejected["closed_round"] == 1)
    await world.stop(agg)

    [partial] = await world.partials()
    np.testing.assert_allclose(partial.tensors.flat, weighted_sum(updates), rtol=1e-6)
    assert partial.tensors.flat.dtype == np.float32
    assert [s.name for s in partial.tensors.manifest] == ["w", "b"]
    assert (partial.num_updates, partial.num_examples, partial.rejected) == (3, 60, 0)
    assert partial.loss_sum == pytest.approx(sum(u.num_examples * u.train_loss for u in updates))
    assert partial.train_seconds_sum == pytest.approx(6.0)
    tp = TopicPartition(updates_topic(world.hospital), 0)
    sub = await world.bus.subscribe([tp.topic], group=f"aggregator.{world.hospital}")
    assert await sub.committed(tp) == 4  # the late rejection needs no replay either


async def test_aggregator_update_in_many_chunks_is_folded_once() -> None:
    world = World()
    await _ready(world, goal=2)
    a, b = world.update("a", examples=3), world.update("b", np.ones(SIZE), examples=5)
    agg = await world.start()
    chunks_a, chunks_b = world.chunks(a, SMALL_CHUNKS), world.chunks(b, SMALL_CHUNKS)
    for ca, cb in zip(chunks_a, chunks_b, strict=False):  # two uploads interleaved
        await world.send_raw("a", ca)
        await world.send_raw("b", cb)
    for rest in chunks_a[len(chunks_b) :] + chunks_b[len(chunks_a) :]:
        await world.send_raw("x", rest)
    await eventually(lambda: agg.stats().partials == 1)
    await world.stop(agg)
    [partial] = await world.partials()
    np.testing.assert_allclose(partial.tensors.flat, weighted_sum([a, b]), rtol=1e-6)


async def test_aggregator_deadline_publishes_what_it_has() -> None:
    world = World()
    await _ready(world, goal=5, deadline_ms=T0 + 1_000)
    updates = [world.update("d1", examples=4), world.update("d2", examples=6)]
    agg = await world.start()
    for u in updates:
        await world.send(u)
    await eventually(lambda: agg.stats().accepted == 2)
    assert await world.partials() == []
    world.now = T0 + 1_000
    await eventually(lambda: agg.stats().partials == 1)
    await world.stop(agg)
    [partial] = await world.partials()
    assert (partial.num_updates, partial.num_examples) == (2, 10)
    np.testing.assert_allclose(partial.tensors.flat, weighted_sum(updates), rtol=1e-6)


async def test_aggregator_deadline_with_no_updates_publishes_empty_partial() -> None:
    world = World()
    await _ready(world, goal=5, deadline_ms=T0 + 1_000)
    agg = await world.start()
    world.now = T0 + 2_000
    await eventually(lambda: agg.stats().partials == 1)
    await world.stop(agg)
    [partial] = await world.partials()
    assert (partial.num_updates, partial.num_examples) == (0, 0)
    assert partial.tensors.flat.tolist() == [0.0] * SIZE
    assert [s.shape for s in partial.tensors.manifest] == [(3, 2), (2,)]


async def test_aggregator_new_round_plan_closes_the_old_round() -> None:
    world = World()
    await _ready(world, goal=5)
    agg = await world.start()
    await world.send(world.update("d1"))
    await eventually(lambda: agg.stats().accepted == 1)
    await world.version(1)
    await world.plan(round_id=2, goal=1, base_version=1)
    await eventually(lambda: agg.stats().partials == 1)
    await world.send(world.update("d1", round_id=2, base_version=1))
    await eventually(lambda: agg.stats().partials == 2)
    await world.stop(agg)
    assert [(p.round_id, p.num_updates) for p in await world.partials()] == [(1, 1), (2, 1)]


async def test_aggregator_memory_does_not_grow_with_devices() -> None:
    world = World()
    await _ready(world, goal=10_000)
    agg = await world.start()
    rng = np.random.default_rng(1)
    sizes = []
    for first, last in ((0, 10), (10, 300)):
        for i in range(first, last):
            await world.send(world.update(f"d{i}", rng.normal(size=SIZE)))
        await eventually(lambda n=last: agg.stats().accepted == n)  # type: ignore[misc]
        acc = agg.book.open[world.model].acc
        assert acc is not None
        sizes.append(acc.nbytes)
    await world.stop(agg)
    # The float64 sum and its batch's float64 blocks: a multiple of the model, not of devices.
    assert sizes[0] == sizes[1] == (2 + FOLD_BATCH) * SIZE * 8


async def test_aggregator_round_superseded_before_any_update_publishes_nothing() -> None:
    world = World()
    await _ready(world, goal=5)
    await world.version(1)
    await world.plan(round_id=2, goal=1, base_version=1)  # the coordinator moved on
    agg = await world.start()
    await world.send(world.update("d1", round_id=1))
    await world.send(world.update("d2", round_id=2, base_version=1))
    await eventually(lambda: agg.stats().partials == 1)
    await world.stop(agg)
    assert [p.round_id for p in await world.partials()] == [2]
    assert agg.stats().rejected == {"closed_round": 1}


async def test_world_update_round_trips_through_chunks() -> None:
    world = World()
    update = world.update("d1")
    assert decode_chunked(world.chunks(update, SMALL_CHUNKS), ModelUpdate) == update
