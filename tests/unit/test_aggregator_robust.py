"""A hospital aggregator under a robust rule, and its checks of example counts."""

from __future__ import annotations

import numpy as np
import pytest

from flcore.robust import coordinate_median, trimmed_mean
from tests.support.aggregator import SIZE, World, eventually, weighted_sum

pytestmark = pytest.mark.unit


def _estimate(partial) -> np.ndarray:  # type: ignore[no-untyped-def]
    return partial.tensors.flat / partial.num_examples


async def test_median_partial_ignores_a_scaled_update() -> None:
    world = World()
    await world.bus.start()
    await world.version(0)
    await world.plan(goal=5, aggregation="median")
    rng = np.random.default_rng(1)
    honest = [rng.normal(size=SIZE) for _ in range(4)]
    deltas = [*honest, honest[0] * -10]  # one attacker, valid in every other respect
    agg = await world.start()
    for i, d in enumerate(deltas):
        await world.send(world.update(f"d{i}", d, examples=10 * (i + 1)))
    await eventually(lambda: agg.stats().partials == 1)
    await world.stop(agg)
    [partial] = await world.partials()
    assert (partial.num_updates, partial.num_examples) == (5, 150)
    want = coordinate_median(np.asarray(deltas, np.float32))
    np.testing.assert_allclose(_estimate(partial), want, rtol=1e-5)
    assert np.abs(_estimate(partial)).max() <= np.abs(honest).max() + 1e-6


async def test_trimmed_mean_partial_follows_the_plan_fraction() -> None:
    world = World()
    await world.bus.start()
    await world.version(0)
    await world.plan(goal=5, aggregation="trimmed_mean", trim_fraction=0.2)
    deltas = [np.full(SIZE, v, np.float32) for v in (1.0, 2.0, 3.0, 4.0, 1e6)]
    agg = await world.start()
    for i, d in enumerate(deltas):
        await world.send(world.update(f"d{i}", d))
    await eventually(lambda: agg.stats().partials == 1)
    await world.stop(agg)
    [partial] = await world.partials()
    np.testing.assert_allclose(_estimate(partial), trimmed_mean(np.asarray(deltas), 0.2))
    np.testing.assert_allclose(_estimate(partial), np.full(SIZE, 3.0))


async def test_robust_plan_over_the_memory_bound_is_refused_and_audited() -> None:
    world = World()
    await world.bus.start()
    await world.version(0)
    await world.plan(goal=4, aggregation="median")  # needs 4 x 8 x 4 = 128 bytes
    agg = await world.start(max_robust_bytes=127)
    await eventually(lambda: agg.stats().plans_refused == 1)
    await world.send(world.update("d0"))
    await eventually(lambda: agg.stats().rejected["closed_round"] == 1)
    await world.stop(agg)
    assert await world.partials() == []
    kinds = [e.kind for e in await world.audits()]
    assert "plan.refused" in kinds


async def test_plan_bounds_examples_by_max_steps_times_batch() -> None:
    world = World()
    await world.bus.start()
    await world.version(0)
    await world.plan(goal=2, max_steps=2)  # batch 32: at most 64 distinct examples
    agg = await world.start()
    await world.send(world.update("d0", examples=65))
    await world.send(world.update("d1", examples=64))
    await eventually(lambda: agg.stats().rejected["too_many_examples"] == 1)
    await eventually(lambda: agg.stats().accepted == 1)
    await world.stop(agg)


async def test_a_jump_in_a_device_example_count_is_clamped_to_its_history() -> None:
    world = World()
    await world.bus.start()
    await world.version(0)
    await world.plan(round_id=1, goal=2)
    agg = await world.start()
    first = [world.update("d0", examples=10), world.update("d1", examples=10)]
    for u in first:
        await world.send(u)
    await eventually(lambda: agg.stats().partials == 1)
    await world.plan(round_id=2, goal=2)
    second = [
        world.update("d0", round_id=2, examples=15),  # grew 1.5x: fine
        world.update("d1", round_id=2, examples=10_000),  # 1000x: weighed as 20
    ]
    for u in second:
        await world.send(u)
    await eventually(lambda: agg.stats().partials == 2)
    await world.stop(agg)
    partial = (await world.partials())[-1]
    assert partial.num_examples == 35 and agg.stats().clamped == 1
    clamped = [world.update("d0", second[0].tensors.flat, examples=15),
               world.update("d1", second[1].tensors.flat, examples=20)]  # fmt: skip
    np.testing.assert_allclose(partial.tensors.flat, weighted_sum(clamped), rtol=1e-6)
    assert "update.clamped" in [e.kind for e in await world.audits()]


async def test_one_device_reporting_different_counts_for_two_models_is_not_clamped() -> None:
    world = World()
    other = World(world.bus)
    other.model = "m2"
    await world.bus.start()
    for w in (world, other):
        await w.version(0)
        await w.plan(goal=1)
    agg = await world.start()
    await world.send(world.update("d0", examples=10))
    await eventually(lambda: agg.stats().partials == 1)
    await world.send(other.update("d0", examples=1000))
    await eventually(lambda: agg.stats().partials == 2)
    await world.stop(agg)
    assert agg.stats().clamped == 0
