"""Simulated attackers: honest devices whose uploads are rewritten on the way out."""

from __future__ import annotations

import numpy as np
import pytest

from flbus.memory import MemoryPubSub
from flsim.attack import Attack, AttackerBus
from schemas import ModelUpdate, Tensors, TensorSpec, TrainingFailure, encode
from schemas.chunking import decode_chunked, encode_chunked
from schemas.topics import upload_topic

pytestmark = pytest.mark.unit


def _update(flat: np.ndarray) -> ModelUpdate:
    t = Tensors((TensorSpec("w", (flat.size,)),), flat.astype(np.float32))
    return ModelUpdate("m", 1, 0, "d0", "h0", 10, 0.5, 1.0, b"tok", "d0-m-r1-x", t)


def test_attackers_are_a_seeded_rounded_share_of_the_devices() -> None:
    devices = [f"d{i}" for i in range(30)]
    chosen = Attack(0.1, "scale", seed=4).choose(devices)
    assert len(chosen) == 3 and chosen == Attack(0.1, "scale", seed=4).choose(devices)
    assert Attack(0.0).choose(devices) == frozenset()


def test_poison_flips_scales_or_boosts_to_just_under_the_bound() -> None:
    u = np.array([3.0, 4.0], np.float32)  # norm 5
    np.testing.assert_allclose(Attack(0.1, "sign_flip").poison(u), -u)
    np.testing.assert_allclose(Attack(0.1, "scale").poison(u), -10 * u)
    boosted = Attack(0.1, "boost", norm_bound=100.0).poison(u)
    assert np.linalg.norm(boosted) == pytest.approx(99.0, rel=1e-5)
    assert np.dot(boosted, u) < 0
    with pytest.raises(ValueError, match="norm bound"):
        Attack(0.1, "boost")
    with pytest.raises(ValueError, match="attack must be"):
        Attack(0.1, "krum")


async def test_attacker_bus_rewrites_whole_uploads_and_passes_the_rest() -> None:
    inner = MemoryPubSub()
    await inner.start()
    topic = upload_topic("h0", "d0")
    sub = await inner.subscribe([topic])
    bus = AttackerBus(inner, Attack(0.1, "scale"), max_chunk_bytes=1400)
    update = _update(np.arange(1000, dtype=np.float32))
    chunks = encode_chunked(update, update.update_id, 1400)
    assert len(chunks) > 2
    for data in chunks:
        await bus.publish(topic, data, headers=(("x", b"1"),))
    failure = encode(TrainingFailure("m", 1, "d0", "h0", "out_of_memory", "", 1))
    await bus.publish(topic, failure)
    got = []
    while (record := await sub.get(0.2)) is not None:
        got.append(record)
    assert got[-1].value == failure
    sent = decode_chunked([r.value for r in got[:-1]], ModelUpdate)
    np.testing.assert_allclose(sent.tensors.flat, -10 * update.tensors.flat)
    assert (sent.token, sent.num_examples, sent.update_id) == (b"tok", 10, update.update_id)
    assert all(r.headers == (("x", b"1"),) for r in got[:-1]) and bus.poisoned == 1
