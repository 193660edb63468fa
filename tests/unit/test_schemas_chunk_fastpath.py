"""The Chunk fast path: same bytes as the general codec, same errors on bad input."""

from __future__ import annotations

import random
import struct
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from schemas import Chunk, ModelUpdate, Tensors, _fastpath, decode, encode
from schemas.chunking import (
    ChunkedReceiver,
    Completed,
    Reassembler,
    decode_chunked,
    digest,
    encode_chunked,
    encode_parts_chunked,
    parse_chunk,
    split,
)
from schemas.codec import _SCHEMA_BYTES, encode_reference
from schemas.errors import (
    DecodeError,
    DigestMismatchError,
    InconsistentChunkError,
    UnknownMessageError,
    UnknownStreamError,
    ValidationError,
)

pytestmark = pytest.mark.unit

SCHEMA = _SCHEMA_BYTES[Chunk]


def _update(n: int, update_id: str = "upd-1") -> ModelUpdate:
    flat = np.arange(n, dtype=np.float32)
    t = Tensors.from_dict({"w": flat[: n - 3], "b": flat[n - 3 :]})
    return ModelUpdate("m1", 1, 0, "dev-1", "hosp_a", 5, 0.1, 1.0, b"tok", update_id, t)


def _fields(c: Chunk) -> tuple[object, ...]:
    return (
        c.stream_id,
        c.kind,
        c.seq,
        c.total,
        c.total_bytes,
        c.chunk_size,
        bytes(c.digest),
        bytes(c.payload),
    )


def _parsed(data: bytes) -> tuple[object, ...]:
    f = parse_chunk(data)
    return (*f[:7], bytes(f[7]))


@pytest.mark.parametrize(
    ("stream_id", "kind", "size", "max_bytes"),
    [
        ("upd-1", "ModelUpdate", 100_000, 16 * 1024),
        ("s", "K", 3, 2048),
        ("é" * 128, "ModelVersion", 70_001, 8192),  # 256 bytes of UTF-8, the longest id
        ("x" * 13, "ArtifactBundle", 0, 4096),  # empty payload: one empty chunk
    ],
)
def test_fast_encoder_is_byte_identical_to_general_encoder(
    stream_id: str, kind: str, size: int, max_bytes: int
) -> None:
    payload = random.Random(size).randbytes(size)
    general = [
        encode(c) for c in split(payload, stream_id=stream_id, kind=kind, max_chunk_bytes=max_bytes)
    ]
    # Parts cut at odd places: chunks spanning part boundaries are gathered too.
    a = min(7, size)
    b = max(a, size // 2)
    parts = [payload[:a], payload[a:b], b"", payload[b:]]
    fast = encode_parts_chunked(parts, stream_id, kind, max_bytes)
    assert fast == general
    assert max(len(d) for d in fast) <= max_bytes


def test_fast_encoded_chunks_read_by_pyarrow_and_general_decoder() -> None:
    msg = _update(50_000)
    chunks = encode_chunked(msg, "upd-1", 32 * 1024)
    assert len(chunks) > 2
    for seq, data in enumerate(chunks):
        table = pa.ipc.open_stream(data).read_all()
        row = table.to_pylist()[0]
        assert (row["stream_id"], row["kind"], row["seq"]) == ("upd-1", "ModelUpdate", seq)
        assert row["total"] == len(chunks)
        general = decode(data, Chunk)
        assert _fields(general) == _parsed(data)
        assert row["payload"] == bytes(general.payload)
        assert row["digest"] == bytes(general.digest)
    assert decode_chunked(chunks) == msg


def test_pyarrow_written_chunks_are_accepted_by_the_fast_receiver() -> None:
    msg = _update(40_000)
    general = [
        decode(d, Chunk) for d in encode_chunked(msg, "upd-9", 16 * 1024)
    ]  # Chunk objects, payloads are views
    foreign = [encode_reference(c) for c in general]
    assert _fastpath.read_chunk(foreign[0], SCHEMA) is None  # not our framing: general path
    assert [_parsed(d) for d in foreign] == [_fields(c) for c in general]
    rx = ChunkedReceiver()
    order = list(range(len(foreign)))
    random.Random(4).shuffle(order)
    outs = [rx.add(foreign[i], 0) for i in order]
    assert outs[-1] == msg
    assert all(o is None for o in outs[:-1])


def test_fast_reader_takes_memoryview_and_bytearray_input() -> None:
    data = encode_chunked(_update(3000), "upd-1", 4096)[1]
    for wrapped in (bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        assert _fastpath.read_chunk(wrapped, SCHEMA) is not None
        assert _parsed(wrapped) == _parsed(data)


def test_fast_reader_payload_is_a_view_of_the_message() -> None:
    data = encode_chunked(_update(3000), "upd-1", 4096)[0]
    payload = parse_chunk(data)[7]
    assert isinstance(payload, memoryview)
    assert np.shares_memory(np.frombuffer(payload, np.uint8), np.frombuffer(data, np.uint8))


def test_add_encoded_returns_stream_kind_and_buffer() -> None:
    msg = _update(20_000)
    rx = Reassembler()
    results = [rx.add_encoded(d, 0) for d in encode_chunked(msg, "upd-2", 8192)]
    done = results[-1]
    assert isinstance(done, Completed)
    assert (done.stream_id, done.kind) == ("upd-2", "ModelUpdate")
    assert isinstance(done.payload, memoryview)
    assert decode(done.payload, ModelUpdate) == msg
    assert rx.pending == []


# ------------------------------------------------------------- bad input


def _body_field(data: bytes, offset_from_b: int) -> int:
    """Absolute position of a field at ``B + offset_from_b`` in an encoded chunk."""
    f = parse_chunk(data)
    frame = _fastpath.chunk_frame(SCHEMA, len(f[0].encode()), len(f[1].encode()), len(f[7]))
    return len(frame.head) + frame.b + offset_from_b


def _patch_i64(data: bytes, offset_from_b: int, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<q", out, _body_field(data, offset_from_b), value)
    return bytes(out)


@pytest.mark.parametrize(
    "data", [b"", b"garbage bytes", bytes(range(256)) * 4, b"\xff\xff\xff\xff" + bytes(2000)]
)
def test_fast_receiver_garbage_raises_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        ChunkedReceiver().add(data, 0)
    with pytest.raises(DecodeError):
        Reassembler().add_encoded(data, 0)


def test_fast_receiver_truncated_chunk_raises_decode_error() -> None:
    data = encode_chunked(_update(20_000), "upd-1", 8192)[0]
    for cut in (8, 700, len(data) // 2, len(data) - 9):
        with pytest.raises(DecodeError):
            ChunkedReceiver().add(data[:cut], 0)


def test_fast_receiver_digest_mismatch_raises() -> None:
    chunks = encode_chunked(_update(20_000), "upd-1", 8192)
    bad = bytearray(chunks[1])
    bad[-20] ^= 0xFF  # inside the payload (the tail is padding + EOS, 8 bytes each at most)
    chunks[1] = bytes(bad)
    rx = ChunkedReceiver()
    with pytest.raises(DigestMismatchError, match="upd-1"):
        for d in chunks:
            rx.add(d, 0)
    assert rx.reassembler.pending == []


def test_fast_receiver_tampered_digest_field_is_inconsistent() -> None:
    chunks = encode_chunked(_update(20_000), "upd-1", 8192)
    bad = bytearray(chunks[2])
    bad[_body_field(chunks[2], 40)] ^= 0x01  # first digest byte
    rx = ChunkedReceiver()
    rx.add(chunks[0], 0)
    with pytest.raises(InconsistentChunkError, match="digest"):
        rx.add(bytes(bad), 0)


def test_fast_receiver_inconsistent_total_raises() -> None:
    long = encode_chunked(_update(20_000), "upd-1", 8192)
    short = encode_chunked(_update(10_000), "upd-1", 8192)
    rx = ChunkedReceiver()
    rx.add(long[0], 0)
    with pytest.raises(InconsistentChunkError, match="differs from earlier chunks"):
        rx.add(short[-1], 0)


@pytest.mark.parametrize(
    ("offset", "delta", "match"),
    [(8, 1, "total"), (0, 1000, "seq"), (16, 10**9, "total"), (24, 8, "payload is")],
)
def test_fast_receiver_chunk_inconsistent_with_itself_raises(
    offset: int, delta: int, match: str
) -> None:
    data = encode_chunked(_update(20_000), "upd-1", 8192)[0]
    pos = _body_field(data, offset)
    value = struct.unpack_from("<q", data, pos)[0]
    with pytest.raises(InconsistentChunkError, match=match):
        ChunkedReceiver().add(_patch_i64(data, offset, value + delta), 0)


def test_fast_receiver_total_bytes_differing_from_earlier_chunks_raises() -> None:
    chunks = encode_chunked(_update(20_000), "upd-1", 8192)
    rx = ChunkedReceiver()
    rx.add(chunks[0], 0)
    size = struct.unpack_from("<q", chunks[1], _body_field(chunks[1], 16))[0]
    with pytest.raises(InconsistentChunkError, match="total_bytes"):
        rx.add(_patch_i64(chunks[1], 16, size - 1), 0)


def test_fast_receiver_expired_stream_raises_unknown_stream() -> None:
    chunks = encode_chunked(_update(20_000), "upd-1", 8192)
    rx = ChunkedReceiver(timeout_ms=1000)
    rx.add(chunks[0], 0)
    assert rx.expire(1000) == ["upd-1"]
    with pytest.raises(UnknownStreamError, match="expired"):
        rx.add(chunks[1], 1001)


def test_fast_receiver_unknown_kind_raises() -> None:
    data = encode_parts_chunked([b"abc"], "x", "Nope")[0]
    assert _fastpath.read_chunk(data, SCHEMA) is not None
    with pytest.raises(UnknownMessageError, match="Nope"):
        ChunkedReceiver().add(data, 0)


def test_fast_receiver_invalid_utf8_id_falls_back_to_precise_error() -> None:
    data = bytearray(encode_parts_chunked([b"abc"], "ab", "K")[0])
    f = _fastpath.chunk_frame(SCHEMA, 2, 1, 3)
    data[len(f.head) + 8] = 0xFF  # first byte of stream_id
    assert _fastpath.read_chunk(bytes(data), SCHEMA) is None
    with pytest.raises(DecodeError, match=r"UTF-?8"):
        ChunkedReceiver().add(bytes(data), 0)


@pytest.mark.parametrize(("stream_id", "kind"), [("", "K"), ("x" * 257, "K"), ("s", "")])
def test_fast_encoder_invalid_ids_raise_validation_error(stream_id: str, kind: str) -> None:
    with pytest.raises(ValidationError):
        encode_parts_chunked([b"abc"], stream_id, kind)


def test_reassembled_buffer_holds_exactly_the_payload() -> None:
    # Every byte of the reassembly buffer must come from a chunk, in its place.
    payload = random.Random(7).randbytes(77_777)
    rx = Reassembler()
    data = encode_parts_chunked([payload], "s-1", "ModelUpdate", 4096)
    random.Random(8).shuffle(data)
    outs = [rx.add_encoded(d, 0) for d in data]
    assert bytes(outs[-1].payload) == payload
    assert digest(outs[-1].payload) == digest(payload)


def test_reuse_heap_buffers_is_explicit() -> None:
    code = "import schemas.chunking, flproc.tuning, sys;print(flproc.tuning.reuse_heap_buffers())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    expected = "True" if sys.platform.startswith("linux") else "False"
    if sys.platform.startswith("linux") and "glibc" not in " ".join(
        __import__("platform").libc_ver()
    ):
        expected = out.stdout.strip()  # musl: either answer is fine, it must not fail
    assert out.stdout.strip() == expected
