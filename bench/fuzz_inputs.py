"""Inputs of bench.fuzz: valid seed messages, byte mutations, and the ingresses they hit.

Input ``i`` of an ingress is a pure function of (ingress, i), so a crash found
in a child process is reproduced from its index alone (``bench.fuzz --replay``).
Ingresses: one per message type (``decode(data, T)`` as a consumer of T's topic
calls it, and ``decode(data)`` as a consumer of a mixed topic does), ``chunk``
(``parse_chunk`` of one encoded chunk) and ``reassembly`` (a whole chunk stream
into a ``ChunkedReceiver``: chunks mutated, dropped, repeated or mixed, or a
mutated message chunked with a matching digest so its decode is reached).
"""

from __future__ import annotations

import contextlib
import random
import struct
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from schemas import MESSAGE_TYPES, ArtifactBundle, Chunk, Tensors, TensorSpec, decode, encode
from schemas.chunking import (
    ChunkedReceiver,
    encode_chunked,
    encode_parts_chunked,
    parse_chunk,
    split,
)
from schemas.codec import _SCHEMA_BYTES, encode_reference
from schemas.errors import SchemaError, ValidationError

MESSAGE_INGRESSES = tuple(sorted(MESSAGE_TYPES))
INGRESSES = (*MESSAGE_INGRESSES, "chunk", "reassembly")
EDGES = (0, 1, -1, 7, 8, 255, 2**31 - 1, -(2**31), 2**30, 1 << 20, 2**32 - 1)


# ------------------------------------------------------------------- seeds


def _tensors(rng: random.Random) -> Tensors:
    count = rng.choice((0, 1, 2, 3, 5))
    shapes = [tuple(rng.randint(0, 5) for _ in range(rng.randint(0, 3))) for _ in range(count)]
    if count and rng.random() < 0.3:
        shapes[0] = (rng.randint(100, 3000),)
    manifest = tuple(TensorSpec(f"layer{k}/w", s) for k, s in enumerate(shapes))
    n = sum(s.size for s in manifest)
    flat = np.random.default_rng(rng.randrange(2**32)).standard_normal(n, dtype=np.float32)
    return Tensors(manifest, flat)


def _value(kind: Any, rng: random.Random) -> Any:
    if kind is str:
        return rng.choice(("a1", "hosp_a", "dev-17", "model-x", "ok", "é\u65e5", "x" * 60))
    if kind is int:
        return rng.choice((0, 1, 3, 1000, 1_700_000_000_000))
    if kind is float:
        return rng.choice((0.0, 0.5, 1.0, 1e-3))
    if kind is bool:
        return rng.random() < 0.5
    if kind is bytes:
        return rng.randbytes(rng.choice((1, 16, 41, 300)))
    if kind is Tensors:
        return _tensors(rng)
    item = typing.get_args(kind)[0]
    return tuple(_value(item, rng) for _ in range(rng.randint(0, 4)))


_SAFE: dict[Any, Any] = {str: "a1", int: 1, float: 0.5, bool: False, bytes: b"t"}
_SAFE_FIELDS: dict[str, Any] = {"aggregation": "median", "trim_fraction": 0.2}  # narrow fields


def _safe(name: str, kind: Any) -> Any:
    return _SAFE_FIELDS.get(name, _SAFE.get(kind, ()))


def _generic(cls: type[Any], rng: random.Random) -> Any:
    """A valid ``cls``; a field the class rejects is replaced by a safe value."""
    kinds = dict(cls.FIELD_KINDS)
    values = {name: _value(kind, rng) for name, kind in kinds.items()}
    for _ in range(2 * len(values)):
        try:
            return cls(**values)
        except ValidationError as e:
            if e.field in values and values[e.field] != _safe(e.field, kinds[e.field]):
                values[e.field] = _safe(e.field, kinds[e.field])
            else:  # parallel lists, or a field named after a column: empty all lists
                values.update({n: () for n, k in kinds.items() if typing.get_origin(k) is tuple})
    raise AssertionError(f"no valid {cls.__name__} from {values!r}")


def _message(cls: type[Any], rng: random.Random) -> Any:
    if cls is ArtifactBundle:
        files = {f"f{k}.onnx": rng.randbytes(rng.randint(0, 400)) for k in range(rng.randint(0, 3))}
        return ArtifactBundle.pack("m1", "ab" * 16, files)
    if cls is Chunk:
        payload = encode(_message(MESSAGE_TYPES["ModelUpdate"], rng))
        chunks = list(split(payload, stream_id="u-1", kind="ModelUpdate", max_chunk_bytes=2048))
        return rng.choice(chunks)
    return _generic(cls, rng)


@cache
def seeds(name: str) -> tuple[bytes, ...]:
    """Encoded valid messages of type ``name`` (both our framing and pyarrow's)."""
    rng = random.Random(name)
    out = []
    for k in range(8):
        msg = _message(MESSAGE_TYPES[name], rng)
        out.append(encode(msg) if k % 2 else encode_reference(msg))
    return tuple(out)


@cache
def chunk_seeds() -> tuple[bytes, ...]:
    """Encoded chunks of chunked ModelUpdates and ModelVersions."""
    out: list[bytes] = []
    for name in ("ModelUpdate", "ModelVersion", "ArtifactBundle"):
        for k, data in enumerate(seeds(name)[:4]):
            out += encode_chunked(decode(data), f"{name}-{k}", max_chunk_bytes=1500)
    return tuple(out)


@cache
def _all_seeds() -> tuple[bytes, ...]:
    return tuple(s for n in MESSAGE_INGRESSES for s in seeds(n))


# ---------------------------------------------------------------- mutations


def mutate(data: bytes, rng: random.Random, prefix: int = 0) -> bytes:
    """1-4 of: bit flips, length-field edits, truncation, insertion, deletion, splice.

    Positions fall mostly past ``prefix`` (the schema message), where the record
    batch's lengths and offsets live.
    """
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            buf += rng.randbytes(rng.randint(1, 64))
            continue
        lo = prefix if prefix < len(buf) and rng.random() < 0.8 else 0
        pos = rng.randrange(lo, len(buf))
        op = rng.randrange(7)
        if op == 0:
            for _ in range(rng.randint(1, 8)):
                buf[rng.randrange(lo, len(buf))] ^= 1 << rng.randrange(8)
        elif op in (1, 2):  # a length or offset field: aligned int32 / int64 edge values
            size = 4 * op
            pos -= pos % size
            if pos + size <= len(buf):
                value = rng.choice(EDGES) + rng.choice((0, 0, 1, -1, 8))
                struct.pack_into("<q" if size == 8 else "<i", buf, pos, _wrap(value, size))
        elif op == 3:
            del buf[pos:]
        elif op == 4:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 32))
        elif op == 5:
            del buf[pos : pos + rng.randint(1, 32)]
        else:  # splice: this message's head with another seed's tail
            other = rng.choice(_all_seeds())
            buf[pos:] = other[rng.randrange(len(other)) :]
    return bytes(buf)


def _wrap(value: int, size: int) -> int:
    bits = 8 * size
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _hostile(
    pool: tuple[bytes, ...], prefix_of: Callable[[bytes], int], rng: random.Random
) -> bytes:
    roll = rng.random()
    if roll < 0.04:
        return rng.randbytes(rng.randint(0, 600))
    if roll < 0.08:
        return rng.choice(list(_SCHEMA_BYTES.values())) + rng.randbytes(rng.randint(0, 600))
    data = rng.choice(pool)
    return mutate(data, rng, prefix_of(data))


def _schema_len(data: bytes) -> int:
    return 8 + struct.unpack_from("<i", data, 4)[0] if len(data) >= 8 else 0


def message_input(name: str, i: int) -> bytes:
    """Input ``i`` of the ingress of message type ``name``."""
    return _hostile(seeds(name), _schema_len, random.Random(f"{name}:{i}"))


def chunk_input(i: int) -> bytes:
    """Input ``i`` of the chunk parser."""
    return _hostile(chunk_seeds(), _schema_len, random.Random(f"chunk:{i}"))


def stream_input(i: int) -> list[bytes]:
    """Input ``i`` of reassembly: the encoded chunks of one (damaged) stream."""
    rng = random.Random(f"reassembly:{i}")
    name = rng.choice(("ModelUpdate", "ModelVersion", "PartialAggregate", "ArtifactBundle"))
    payload = rng.choice(seeds(name))
    roll = rng.random()
    if roll < 0.3:  # the message itself is damaged; the stream is sound
        payload = mutate(payload, rng, _schema_len(payload))
    chunks = encode_parts_chunked([payload], f"s{i}", name, 1500)
    if 0.3 <= roll < 0.8:  # some chunks damaged
        for _ in range(rng.randint(1, 3)):
            k = rng.randrange(len(chunks))
            chunks[k] = mutate(chunks[k], rng, _schema_len(chunks[k]))
    else:  # dropped, repeated, reordered, or chunks of another stream mixed in
        rng.shuffle(chunks)
        if rng.random() < 0.5:
            chunks.insert(rng.randrange(len(chunks) + 1), rng.choice(chunk_seeds()))
        if rng.random() < 0.5 and len(chunks) > 1:
            chunks.pop(rng.randrange(len(chunks)))
        chunks.append(rng.choice(chunks))
    return chunks


# ---------------------------------------------------------------- ingresses


def _decode_both(name: str) -> Callable[[bytes], bool]:
    cls = MESSAGE_TYPES[name]

    def run(data: bytes) -> Any:
        with contextlib.suppress(SchemaError):  # a mixed topic's consumer
            decode(data)
        return decode(data, cls)  # T's topic's consumer: its outcome is the one counted

    return run


def _feed(chunks: list[bytes]) -> bool:
    rx = ChunkedReceiver(timeout_ms=60_000)
    done = False
    for data in chunks:
        try:
            done = rx.add(data, 0) is not None or done
        except SchemaError:
            continue  # a consumer skips the bad chunk and goes on with the next
    if not done:
        raise _Incomplete
    return True


class _Incomplete(Exception):
    """The stream did not complete: a typed outcome, not an escape."""


Ingress = tuple[Callable[[int], Any], Callable[[Any], Any]]


def ingress(name: str) -> Ingress:
    """(input of index i, the call that consumes it) of ingress ``name``."""
    if name == "chunk":
        return chunk_input, parse_chunk
    if name == "reassembly":
        return stream_input, _feed
    return (lambda i: message_input(name, i)), _decode_both(name)


REJECTIONS: tuple[type[Exception], ...] = (SchemaError, _Incomplete)
"""Exceptions that are typed rejections; any other exception is an escape."""
