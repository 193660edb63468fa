"""A restarted aggregator neither loses nor double-counts an update."""

from __future__ import annotations

import numpy as np
import pytest

from flcore.robust import coordinate_median
from tests.support.aggregator import SIZE, SMALL_CHUNKS, World, eventually, weighted_sum

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("rule", ["fedavg", "median"])
@pytest.mark.parametrize("crash", [False, True], ids=["stopped", "crashed"])
async def test_aggregator_restart_mid_round_counts_each_update_once(crash: bool, rule: str) -> None:
    world = World()
    await world.bus.start()
    await world.version(0)
    await world.plan(goal=4, aggregation=rule)
    rng = np.random.default_rng(2)
    updates = [world.update(f"d{i}", rng.normal(size=SIZE), examples=i + 1) for i in range(4)]
    first = await world.start()
    for u in updates[:2]:
        await world.send(u)
    half = world.chunks(updates[2], SMALL_CHUNKS)
    for data in half[:3]:  # an upload cut off by the restart
        await world.send_raw("d2", data)
    await eventually(lambda: first.stats().accepted == 2)
    await world.stop(first, crash=crash)

    second = await world.start()
    for data in half[3:]:
        await world.send_raw("d2", data)
    await world.send(updates[3])
    await eventually(lambda: second.stats().partials == 1)
    await world.stop(second)

    [partial] = await world.partials()
    assert (partial.num_updates, partial.num_examples) == (4, 10)
    if rule == "median":  # the partial is num_examples x the median of the four
        stack = np.asarray([u.tensors.flat for u in updates])
        np.testing.assert_allclose(partial.tensors.flat, 10 * coordinate_median(stack), rtol=1e-5)
    else:
        np.testing.assert_allclose(partial.tensors.flat, weighted_sum(updates), rtol=1e-6)


async def test_aggregator_restart_after_publish_does_not_publish_again() -> None:
    world = World()
    await world.bus.start()
    await world.version(0)
    await world.plan(goal=2)
    first = await world.start()
    for i in range(2):
        await world.send(world.update(f"d{i}"))
    await eventually(lambda: first.stats().partials == 1)
    await world.stop(first, crash=True)

    # A new group has no committed offsets: as if the commit after the publish was lost.
    second = await world.start(group="aggregator.fresh")
    await eventually(lambda: second.stats().rejected["closed_round"] == 2)
    await world.stop(second)
    assert len(await world.partials()) == 1
    assert second.stats().accepted == 0


async def test_aggregator_restart_resumes_next_round_after_published_one() -> None:
    world = World()
    await world.bus.start()
    await world.version(0)
    await world.plan(goal=1)
    first = await world.start()
    r1 = world.update("d0")
    await world.send(r1)
    await eventually(lambda: first.stats().partials == 1)
    await world.version(1)
    await world.plan(round_id=2, goal=3, base_version=1)
    r2 = [world.update(f"d{i}", round_id=2, base_version=1, examples=i + 2) for i in range(3)]
    await world.send(r2[0])
    await eventually(lambda: first.stats().accepted == 2)
    await world.stop(first)

    second = await world.start()
    for u in r2[1:]:
        await world.send(u)
    await eventually(lambda: second.stats().partials == 1)
    await world.stop(second)
    assert second.stats().accepted == 3  # r2[0] replayed, r1 not (committed behind round 1)
    partials = await world.partials()
    assert [(p.round_id, p.num_updates) for p in partials] == [(1, 1), (2, 3)]
    np.testing.assert_allclose(partials[1].tensors.flat, weighted_sum(r2), rtol=1e-6)
