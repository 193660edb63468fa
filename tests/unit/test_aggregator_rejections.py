"""Every bad update becomes an audited, counted, logged rejection, and the round goes on.

A record that is no update at all (garbage bytes, another message type) is not
a rejection but a dead letter: tests/unit/test_dead_letters_consumers.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import pytest
import structlog

from schemas import Chunk, TrainingFailure, decode, encode
from tests.support.aggregator import SIZE, SMALL_CHUNKS, World, eventually, weighted_sum

pytestmark = pytest.mark.unit

Send = Callable[[World], Awaitable[None]]


async def _bad_token(w: World) -> None:
    await w.send(w.update("bad", secret=b"another-secret"))


async def _duplicate(w: World) -> None:
    await w.send(w.update("good0", np.ones(SIZE)))  # good0 already reported first


async def _closed_round(w: World) -> None:
    await w.send(w.update("bad", round_id=0))


async def _wrong_base_version(w: World) -> None:
    await w.send(w.update("bad", base_version=1))


async def _wrong_size(w: World) -> None:
    await w.send(w.update("bad", np.ones(SIZE + 1), shapes={"w": (3, 2), "b": (3,)}))


async def _wrong_names(w: World) -> None:
    await w.send(w.update("bad", np.ones(SIZE), shapes={"w": (3, 2), "bias": (2,)}))


async def _non_finite(w: World) -> None:
    delta = np.ones(SIZE)
    delta[4] = np.nan
    await w.send(w.update("bad", delta))


async def _over_norm(w: World) -> None:
    await w.send(w.update("bad", np.full(SIZE, 2.0)))  # L2 norm 5.66 > clip_norm 5


async def _digest_mismatch(w: World) -> None:
    chunks = [decode(c, Chunk) for c in w.chunks(w.update("bad"), SMALL_CHUNKS)]
    last = chunks[-1]
    flipped = bytes(b ^ 0xFF for b in bytes(last.payload))
    chunks[-1] = Chunk(
        last.stream_id, last.kind, last.seq, last.total, last.total_bytes, last.chunk_size,
        bytes(last.digest), flipped,
    )  # fmt: skip
    for c in chunks:
        await w.send_raw("bad", encode(c))


CASES: dict[str, tuple[Send, str]] = {
    "bad_token": (_bad_token, "bad_token"),
    "duplicate": (_duplicate, "duplicate"),
    "closed_round": (_closed_round, "closed_round"),
    "wrong_base_version": (_wrong_base_version, "wrong_base_version"),
    "wrong_shapes": (_wrong_size, "bad_shape"),
    "wrong_tensor_names": (_wrong_names, "bad_shape"),
    "non_finite": (_non_finite, "non_finite"),
    "over_norm_bound": (_over_norm, "norm_exceeded"),
    "digest_mismatch": (_digest_mismatch, "DigestMismatchError"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_aggregator_rejects_bad_update_and_round_goes_on(case: str) -> None:
    send, reason = CASES[case]
    world = World()
    await world.bus.start()
    await world.version(0)
    await world.plan(goal=2, clip_norm=5.0)
    good = [world.update("good0", np.ones(SIZE)), world.update("good1", np.full(SIZE, 0.5))]
    agg = await world.start()
    with structlog.testing.capture_logs() as logs:
        await world.send(good[0])
        await eventually(lambda: agg.stats().accepted == 1)
        await send(world)
        await eventually(lambda: sum(agg.stats().rejected.values()) == 1)
        await world.send(good[1])
        await eventually(lambda: agg.stats().partials == 1)
    await world.stop(agg)

    assert dict(agg.stats().rejected) == {reason: 1}
    [event] = [e for e in await world.audits() if e.kind == "update.rejected"]
    device = "good0" if case == "duplicate" else "bad"
    assert (event.reason, event.model, event.hospital_id, event.device_id, event.round_id) == (
        reason, world.model, world.hospital, device, 0 if case == "closed_round" else 1
    )  # fmt: skip
    assert event.detail
    [line] = [e for e in logs if e["event"] == "update.rejected"]
    assert line["reason"] == reason and line["hospital"] == world.hospital
    assert line["model"] == world.model and "round" in line and "device" in line
    [partial] = await world.partials()
    assert partial.num_updates == 2
    np.testing.assert_allclose(partial.tensors.flat, weighted_sum(good), rtol=1e-6)
    assert partial.rejected == (0 if case == "closed_round" else 1)


async def test_aggregator_counts_training_failure_as_dropped_device() -> None:
    world = World()
    await world.bus.start()
    await world.version(0)
    await world.plan(goal=1)
    agg = await world.start()
    failure = TrainingFailure(world.model, 1, "d9", world.hospital, "nan_loss", "loss is NaN", 5)
    await world.send_raw("d9", encode(failure))
    await eventually(lambda: agg.stats().dropped == 1)
    await world.send(world.update("d1"))
    await eventually(lambda: agg.stats().partials == 1)
    await world.stop(agg)
    assert [e.reason for e in await world.audits() if e.kind == "device.dropped"] == ["nan_loss"]
    assert not agg.stats().rejected


async def test_aggregator_update_that_overtakes_its_plan_waits_for_it() -> None:
    world = World()
    await world.bus.start()
    await world.version(0)
    agg = await world.start()
    update = world.update("d1")
    await world.send(update)  # a fast device: its update arrives before this aggregator's plan
    await asyncio.sleep(0.1)
    assert agg.stats().accepted == 0 and not agg.stats().rejected
    await world.plan(goal=1)
    await eventually(lambda: agg.stats().partials == 1)
    await world.stop(agg)
    [partial] = await world.partials()
    assert partial.num_updates == 1 and not agg.stats().rejected
    np.testing.assert_allclose(partial.tensors.flat, weighted_sum([update]), rtol=1e-6)


async def test_aggregator_update_whose_plan_never_comes_is_unknown_round() -> None:
    world = World()
    await world.bus.start()
    await world.version(0)
    agg = await world.start(park_ms=5_000)
    await world.send(world.update("d1"))
    await asyncio.sleep(0.1)
    assert not agg.stats().rejected  # parked, waiting for the plan
    world.now += 5_000
    await eventually(lambda: agg.stats().rejected["unknown_round"] == 1)
    await world.stop(agg)
    [event] = await world.audits()
    assert (event.reason, event.round_id, event.device_id) == ("unknown_round", 1, "d1")
