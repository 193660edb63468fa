"""Chunking: bounded chunks, verified one-copy reassembly, and its failure modes."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from schemas import Chunk, ModelUpdate, Tensors, decode, encode
from schemas.chunking import (
    ChunkedReceiver,
    Reassembler,
    decode_chunked,
    digest,
    encode_chunked,
    split,
)
from schemas.errors import (
    ChunkError,
    DigestMismatchError,
    InconsistentChunkError,
    UnknownMessageError,
    UnknownStreamError,
)

pytestmark = pytest.mark.unit

PAYLOAD = bytes(random.Random(1).randbytes(100_000))


def _chunks(payload: bytes = PAYLOAD, max_bytes: int = 16 * 1024) -> list[Chunk]:
    return list(split(payload, stream_id="s-1", kind="ModelUpdate", max_chunk_bytes=max_bytes))


def _update(n: int) -> ModelUpdate:
    flat = np.arange(n, dtype=np.float32)
    t = Tensors.from_dict({"w": flat})
    return ModelUpdate("m1", 1, 0, "dev-1", "hosp_a", 5, 0.1, 1.0, b"tok", "upd-1", t)


def test_split_encoded_chunks_stay_within_max() -> None:
    for max_bytes in (4096, 16 * 1024, 512 * 1024):
        sizes = [len(encode(c)) for c in _chunks(max_bytes=max_bytes)]
        assert max(sizes) <= max_bytes


def test_encode_chunked_default_bound_for_1m_floats() -> None:
    data = encode_chunked(_update(1 << 20), "upd-1")
    assert len(data) > 1
    assert max(len(d) for d in data) <= 512 * 1024


def test_split_chunks_describe_payload() -> None:
    chunks = _chunks()
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert {c.total for c in chunks} == {len(chunks)}
    assert {bytes(c.digest) for c in chunks} == {digest(PAYLOAD)}
    assert b"".join(bytes(c.payload) for c in chunks) == PAYLOAD


def test_reassembler_reordered_and_duplicated_chunks_give_payload() -> None:
    chunks = _chunks()
    feed = chunks[::-1] + chunks[:3]
    random.Random(2).shuffle(feed)
    rx = Reassembler(timeout_ms=1000)
    results = [rx.add(c, 0) for c in feed + chunks]
    done = [r for r in results if r is not None]
    assert len(done) == 1
    assert bytes(done[0]) == PAYLOAD


def test_reassembler_returns_its_single_buffer() -> None:
    chunks = _chunks()
    rx = Reassembler()
    for c in chunks[:-1]:
        assert rx.add(c, 0) is None
    held = rx._streams["s-1"].buf
    assert rx.held_bytes == len(PAYLOAD)
    out = rx.add(chunks[-1], 0)
    assert out is held
    assert rx.held_bytes == 0


def test_reassembler_late_duplicate_after_completion_is_ignored() -> None:
    chunks = _chunks()
    rx = Reassembler()
    for c in chunks:
        rx.add(c, 0)
    assert rx.add(chunks[0], 5) is None
    assert rx.pending == []


def test_reassembler_stream_reusing_a_completed_id_with_other_bytes_is_new() -> None:
    # A forged stream that took a model version's stream id first must not shadow
    # the genuine one (the device refuses the forgery after reassembly).
    r = Reassembler()
    forged = bytes(len(PAYLOAD))
    for c in _chunks(forged):
        got = r.add(c, 0)
    assert got is not None and bytes(got) == forged

    results = [r.add(c, 0) for c in _chunks()]

    assert bytes(results[-1] or b"") == PAYLOAD


def test_reassembler_digest_mismatch_raises() -> None:
    chunks = _chunks()
    bad = bytearray(chunks[1].payload)
    bad[0] ^= 0xFF
    chunks[1] = dataclasses.replace(chunks[1], payload=bytes(bad))
    rx = Reassembler()
    with pytest.raises(DigestMismatchError, match="s-1"):
        for c in chunks:
            rx.add(c, 0)
    assert rx.pending == []


def test_reassembler_inconsistent_total_raises() -> None:
    chunks = _chunks()
    other = list(
        split(PAYLOAD[:-5000], stream_id="s-1", kind="ModelUpdate", max_chunk_bytes=16 * 1024)
    )
    rx = Reassembler()
    rx.add(chunks[0], 0)
    with pytest.raises(InconsistentChunkError, match="differs from earlier chunks"):
        rx.add(other[-1], 0)


def test_chunk_with_wrong_size_for_its_total_raises() -> None:
    c = _chunks()[0]
    with pytest.raises(InconsistentChunkError, match="total"):
        dataclasses.replace(c, total=c.total + 1)
    with pytest.raises(InconsistentChunkError, match="payload is"):
        dataclasses.replace(c, payload=bytes(c.payload)[:-1])
    with pytest.raises(InconsistentChunkError, match="seq"):
        dataclasses.replace(c, seq=c.total)


def test_reassembler_expire_forgets_idle_streams_then_rejects_their_chunks() -> None:
    chunks = _chunks()
    rx = Reassembler(timeout_ms=1000)
    rx.add(chunks[0], 0)
    rx.add(chunks[1], 500)
    assert rx.expire(1499) == []
    assert rx.expire(1500) == ["s-1"]
    assert rx.held_bytes == 0
    with pytest.raises(UnknownStreamError, match="expired"):
        rx.add(chunks[2], 1600)


def test_reassembler_unknown_stream_query_raises() -> None:
    with pytest.raises(UnknownStreamError, match="nope"):
        Reassembler().missing("nope")


def test_reassembler_refuses_payload_over_limit() -> None:
    rx = Reassembler(max_payload_bytes=1000)
    with pytest.raises(ChunkError, match="exceed"):
        rx.add(_chunks()[0], 0)


def test_chunked_receiver_decodes_message_zero_copy_from_its_buffer() -> None:
    msg = _update(300_000)
    rx = ChunkedReceiver()
    data = encode_chunked(msg, "upd-1", 64 * 1024)
    random.Random(3).shuffle(data)
    outs = [rx.add(d, 0) for d in data]
    out = outs[-1]
    assert all(o is None for o in outs[:-1])
    assert out == msg
    assert not out.tensors.flat.flags.owndata  # a view of the reassembly buffer, not a copy


def test_decode_chunked_incomplete_names_missing() -> None:
    data = encode_chunked(_update(50_000), "upd-1", 32 * 1024)
    with pytest.raises(ChunkError, match=r"missing seqs \[1\]"):
        decode_chunked(data[:1] + data[2:])
    assert decode_chunked(data[::-1]) == _update(50_000)


def test_chunk_of_unknown_kind_is_rejected() -> None:
    c = next(split(b"abc", stream_id="x", kind="Nope"))
    with pytest.raises(UnknownMessageError, match="Nope"):
        ChunkedReceiver().add(encode(c), 0)


def test_chunk_decode_payload_is_view_of_message() -> None:
    data = encode(_chunks()[0])
    c = decode(data, Chunk)
    assert isinstance(c.payload, memoryview)
    assert np.shares_memory(np.frombuffer(c.payload, np.uint8), np.frombuffer(data, np.uint8))
