"""What uploads in flight can make an aggregator hold is bounded, and each refusal is audited once.

Also: an update claiming an absurd example count is refused, and the default
norm bound (the coordinator's default clip_norm, sent in every plan) refuses
a scaled update while an honest one passes.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from schemas import Chunk, encode
from services.aggregator.config import MIB
from services.coordinator.config import RoundSettings
from tests.support.aggregator import SIZE, World, eventually

pytestmark = pytest.mark.unit

PIECE = 1024  # payload bytes per claimed chunk


def _first_chunk(stream_id: str, claimed: int, piece: int = PIECE) -> bytes:
    """Seq 0 of an upload that claims ``claimed`` bytes (and never sends the rest)."""
    total = -(-claimed // piece)
    chunk = Chunk(stream_id, "ModelUpdate", 0, total, claimed, piece, bytes(16), bytes(piece))
    return encode(chunk)


async def test_a_flood_of_huge_upload_claims_holds_nothing() -> None:
    world = World()
    await world.bus.start()
    agg = await world.start()
    for i in range(1_000):  # 1,000 devices each open an upload claiming 100 MB
        # 2 KiB pieces: 48,829 chunks, within the contract's 65,536 per stream
        await world.send_raw(f"d{i}", _first_chunk(f"s{i}", 100 * 1000 * 1000, 2048))
    await eventually(lambda: sum(agg.stats().rejected.values()) == 1_000)
    assert agg.uploads_held() == (0, 0)
    assert dict(agg.stats().rejected) == {"upload_too_large": 1_000}
    await world.stop(agg)


async def test_uploads_in_flight_are_bounded_in_number_and_bytes() -> None:
    world = World()
    await world.bus.start()
    agg = await world.start(max_uploads=50, max_upload_bytes_held=64 * MIB)
    for i in range(1_000):  # 10 MB each: 6 fit in 64 MiB
        await world.send_raw(f"d{i}", _first_chunk(f"s{i}", 10 * MIB))
    await eventually(lambda: sum(agg.stats().rejected.values()) == 1_000 - 6)
    assert agg.uploads_held() == (6, 60 * MIB)
    assert dict(agg.stats().rejected) == {"uploads_memory_full": 994}
    for i in range(100):  # small ones: at most 50 in flight in all
        await world.send_raw(f"e{i}", _first_chunk(f"t{i}", 4 * PIECE))
    await eventually(lambda: agg.stats().rejected["too_many_uploads"] == 56)
    assert agg.uploads_held()[0] == 50
    await world.stop(agg)


async def test_one_device_holds_few_uploads_and_a_refusal_is_audited_once() -> None:
    world = World()
    await world.bus.start()
    agg = await world.start()
    for i in range(5):
        await world.send_raw("greedy", _first_chunk(f"g{i}", 4 * PIECE))
    await world.send_raw("greedy", _first_chunk("g4", 4 * PIECE))  # more of a refused upload
    await eventually(lambda: sum(agg.stats().rejected.values()) == 3)
    await world.stop(agg)
    assert agg.uploads_held() == (2, 8 * PIECE)
    assert dict(agg.stats().rejected) == {"too_many_device_uploads": 3}
    refusals = [e for e in await world.audits() if e.kind == "update.rejected"]
    assert len(refusals) == 3 and {e.device_id for e in refusals} == {"greedy"}


async def test_an_upload_kept_alive_past_its_age_is_dropped() -> None:
    world = World()
    await world.bus.start()
    agg = await world.start(stream_timeout_ms=60_000, stream_max_age_ms=300_000)
    claimed = 100 * PIECE
    for seq in range(6):  # one chunk every 50 s: never idle for a minute
        chunk = Chunk("slow", "ModelUpdate", seq, 100, claimed, PIECE, bytes(16), bytes(PIECE))
        await world.send_raw("d1", encode(chunk))
        await asyncio.sleep(0.05)
        assert agg.uploads_held() == (1, claimed) and not agg.stats().rejected
        world.now += 50_000
    await eventually(lambda: agg.stats().rejected["incomplete_upload"] == 1)  # 300 s old
    assert agg.uploads_held() == (0, 0)
    await world.stop(agg)
    [event] = [e for e in await world.audits() if e.kind == "update.rejected"]
    assert "still incomplete after 300000 ms" in event.detail


async def test_an_update_claiming_absurd_examples_is_refused() -> None:
    world = World()
    await world.bus.start()
    await world.version(0)
    await world.plan(goal=2)
    agg = await world.start()
    await world.send(world.update("liar", np.ones(SIZE), examples=10**9))
    await world.send(world.update("honest", np.ones(SIZE)))
    await eventually(lambda: agg.stats().accepted == 1 and agg.stats().rejected)
    await world.stop(agg)
    assert dict(agg.stats().rejected) == {"too_many_examples": 1}


async def test_the_default_norm_bound_refuses_a_scaled_update() -> None:
    bound = RoundSettings().clip_norm
    assert bound > 0  # on by default
    world = World()
    await world.bus.start()
    await world.version(0)
    await world.plan(goal=2, clip_norm=bound)
    agg = await world.start()
    honest = np.full(SIZE, 0.1, np.float32)  # norm 0.28, like the demo's (at most 1.13)
    await world.send(world.update("honest", honest))
    await world.send(world.update("attacker", honest * 1_000))  # norm 283: sets the model
    await eventually(lambda: agg.stats().accepted == 1 and agg.stats().rejected)
    await world.stop(agg)
    assert dict(agg.stats().rejected) == {"norm_exceeded": 1}
