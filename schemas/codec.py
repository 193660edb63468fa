"""Encode and decode messages as Arrow IPC streams; pyarrow is the reference codec.

A message is one Arrow IPC stream: the schema of its class (type name and
schema version in the metadata, docs/protocol.md), one record batch of one
row, end of stream. pyarrow defines what those bytes mean:
:func:`encode_reference` writes them with ``pyarrow.ipc``'s stream writer, and
:func:`decode_reference` reads them with its reader and validates the batch in
full before reading a value, so any byte string gives a message or a
:class:`~schemas.errors.SchemaError` (never a crash, never another exception).

:func:`encode`, :func:`encode_parts`, :func:`decode` and the chunk framing of
:mod:`schemas.chunking` may take the hand-written fast paths of
:mod:`schemas._fastpath` instead. The section "Path selection" at the end of
this module is the one place that chooses; property tests
(tests/unit/test_schemas_codec_properties.py) hold the fast paths to the
reference.

Tensors travel as one ``list<float32>`` cell whose values buffer is the flat
buffer itself: encoding writes it once, decoding returns a numpy view into the
received bytes (no copy).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Importing the families registers them.
from schemas import (  # noqa: F401
    _fastpath,
    artifacts,
    audit,
    checkin,
    chunk,
    dead_letter,
    evaluation,
    model_version,
    partial,
    round_plan,
    task,
    update,
)
from schemas._base import (
    META_TYPE,
    META_VERSION,
    REGISTRY,
    TENSOR_DATA,
    TENSOR_FIELDS,
    TENSOR_NAMES,
    TENSOR_SHAPES,
)
from schemas.errors import (
    DecodeError,
    SchemaError,
    SchemaVersionError,
    UnknownMessageError,
    ValidationError,
)
from schemas.limits import Bound, TensorBound, over
from schemas.tensors import Tensors, TensorSpec

M = TypeVar("M")

MESSAGE_TYPES: dict[str, type[Any]] = dict(REGISTRY)
"""Every message type, by the name carried in the ``fl.type`` schema metadata."""

_NAMES_T, _SHAPES_T, _DATA_T = (f.type for f in TENSOR_FIELDS)
_INT32_MAX = 2**31 - 1  # list and binary offsets are int32


# ------------------------------------------------------------- message -> batch


def _registered(msg: Any) -> type[Any]:
    cls = type(msg)
    if MESSAGE_TYPES.get(cls.__name__) is not cls:
        raise UnknownMessageError(f"{cls.__name__} is not a registered message type")
    return cls


def _check_sizes(cls: type[Any], msg: Any) -> None:
    """Raise ValidationError for a value too large for one message's int32 offsets."""
    for name, kind in cls.FIELD_KINDS:
        value = getattr(msg, name)
        if kind is Tensors and value.flat.shape[0] > _INT32_MAX:
            raise ValidationError(name, "more than 2**31-1 floats in one message", cls.__name__)
        if kind is bytes and len(value) > _INT32_MAX:
            raise ValidationError(name, "more than 2**31-1 bytes in one message", cls.__name__)


def _bytes_array(value: bytes | memoryview) -> pa.Array:
    """A one-row binary array over ``value`` without copying it."""
    offsets = pa.py_buffer(np.array([0, len(value)], dtype=np.int32))
    return pa.Array.from_buffers(pa.binary(), 1, [None, offsets, pa.py_buffer(value)])


def _tensor_columns(t: Tensors) -> list[pa.Array]:
    flat = np.ascontiguousarray(t.flat)
    n = flat.shape[0]
    names = pa.array([[s.name for s in t.manifest]], type=_NAMES_T)
    shapes = pa.array([[list(s.shape) for s in t.manifest]], type=_SHAPES_T)
    offsets = pa.py_buffer(np.array([0, n], dtype=np.int32))
    values = pa.Array.from_buffers(pa.float32(), n, [None, pa.py_buffer(flat)])
    data = pa.Array.from_buffers(_DATA_T, 1, [None, offsets], children=[values])
    return [names, shapes, data]


def to_record_batch(msg: Any) -> pa.RecordBatch:
    """The one-row record batch of ``msg`` (tensor data and bytes not copied)."""
    cls = _registered(msg)
    _check_sizes(cls, msg)
    schema: pa.Schema = cls.ARROW_SCHEMA
    cols: list[pa.Array] = []
    for name, kind in cls.FIELD_KINDS:
        value = getattr(msg, name)
        if kind is Tensors:
            cols.extend(_tensor_columns(value))
        elif kind is bytes:
            cols.append(_bytes_array(value))
        else:
            cols.append(pa.array([value], type=schema.field(name).type))
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def _write_stream(batch: pa.RecordBatch) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def encode_reference(msg: Any) -> bytes:
    """Encode ``msg`` with pyarrow's IPC stream writer: the definition of the bytes."""
    return typing.cast(bytes, _write_stream(to_record_batch(msg)).to_pybytes())


# ------------------------------------------------------------- batch -> message


@contextmanager
def _arrow_errors() -> Iterator[None]:
    """The one place where errors of pyarrow on bad bytes become ours (DecodeError).

    Besides ``ArrowException``, malformed input has been seen to raise
    ``UnicodeDecodeError``, ``SystemError`` (negative sizes) and ``OverflowError``
    from pyarrow's conversions; our own SchemaErrors pass through unchanged.
    """
    try:
        yield
    except SchemaError:
        raise
    except (
        pa.ArrowException,
        OSError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        OverflowError,
        SystemError,
    ) as e:  # UnicodeDecodeError is a ValueError
        raise DecodeError(f"not a readable Arrow IPC message: {type(e).__name__}: {e}") from None


def _read_batch(data: Any) -> pa.RecordBatch:
    with _arrow_errors():
        reader = pa.ipc.open_stream(pa.py_buffer(data))
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            raise DecodeError("Arrow IPC stream holds no record batch") from None
    if batch.num_rows != 1:
        raise DecodeError(f"expected one row, got {batch.num_rows}")
    return batch


def message_class(schema: pa.Schema) -> type[Any]:
    """Return the registered class named by ``schema``'s metadata, checking its version."""
    meta = schema.metadata or {}
    raw_name = meta.get(META_TYPE)
    if raw_name is None:
        raise UnknownMessageError("schema metadata has no 'fl.type' (not one of our messages)")
    name = raw_name.decode("utf-8", "replace")
    cls = MESSAGE_TYPES.get(name)
    if cls is None:
        raise UnknownMessageError(f"unknown message type {name!r}")
    raw_version = meta.get(META_VERSION)
    got = None if raw_version is None else raw_version.decode("utf-8", "replace")
    try:
        version = int(got) if got is not None else None
    except ValueError:
        version = None
    if version not in cls.SUPPORTED_VERSIONS:
        raise SchemaVersionError(name, got, cls.SUPPORTED_VERSIONS)
    return cls


def _has_offsets(t: pa.DataType) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_string(t) or pa.types.is_binary(t))


def _check_offsets(batch: pa.RecordBatch) -> None:
    """Raise DecodeError for an offset pointing outside the values it indexes.

    ``validate(full=True)`` does not look at the offsets of an empty array, but
    pyarrow's list flattening slices at the first of them, and a slice past the
    end aborts the process (a failed C++ check, not an exception). So every
    offsets buffer of every list, string and binary level is checked here,
    from the raw buffers, before anything is sliced.
    """
    for name, col in zip(batch.schema.names, batch.columns, strict=True):
        while _has_offsets(col.type):
            bufs = col.buffers()
            n, start = len(col), col.offset
            have = 0 if bufs[1] is None else bufs[1].size // 4 - start
            if have < 1:
                if n:
                    raise DecodeError(f"column {name!r}: offsets missing")
                break
            offs = np.frombuffer(bufs[1], dtype=np.int32, count=min(have, n + 1), offset=4 * start)
            if pa.types.is_list(col.type):
                limit = len(col.values)
            else:
                limit = 0 if bufs[2] is None else bufs[2].size
            if offs.min() < 0 or offs.max() > limit:
                raise DecodeError(f"column {name!r}: offsets outside its {limit} values")
            if not pa.types.is_list(col.type):
                break
            col = col.values  # the whole child, unsliced


def _same_type(a: pa.DataType, b: pa.DataType) -> bool:
    """Type equality ignoring child field names and nullability (other writers differ)."""
    if pa.types.is_list(a) and pa.types.is_list(b):
        return _same_type(a.value_type, b.value_type)
    return bool(a == b)


def _check_columns(cls: type[Any], batch: pa.RecordBatch) -> None:
    """Raise ValidationError naming the first missing, mistyped or null column.

    Nulls are looked for at every level of a list: other writers may put
    nulls in fields declared non-nullable, and the IPC reader does not check.
    """
    got = batch.schema
    if got.equals(cls.ARROW_SCHEMA):  # our own schema: same columns in the same order
        columns = list(enumerate(got.names))
    else:  # another writer, or not our schema at all
        columns = []
        for field in cls.ARROW_SCHEMA:
            idx = got.get_field_index(field.name)
            if idx < 0:
                raise ValidationError(field.name, "missing (or repeated)", cls.__name__)
            if not _same_type(field.type, got.field(idx).type):
                raise ValidationError(
                    field.name, f"expected {field.type}, got {got.field(idx).type}", cls.__name__
                )
            columns.append((idx, field.name))
    for idx, name in columns:
        col = batch.column(idx)
        while True:
            if col.null_count:
                raise ValidationError(name, "must not be null", cls.__name__)
            if not pa.types.is_list(col.type):
                break
            col = col.flatten()


def _most(values: pa.Array) -> int:
    """Largest of some non-negative lengths (0 for none)."""
    return int(pc.max(values).as_py() or 0) if len(values) else 0


def _check_bound(cls: type[Any], name: str, col: pa.Array, b: Bound) -> None:
    """Raise ValidationError if one column's sizes exceed ``b``, reading only offsets."""
    if pa.types.is_list(col.type):
        items = int(col.value_lengths()[0].as_py())
        if b.max_items and items > b.max_items:
            raise ValidationError(name, over("items", b.max_items, items), cls.__name__)
        col = col.flatten()
    if b.max_bytes and (pa.types.is_string(col.type) or pa.types.is_binary(col.type)):
        size = _most(pc.binary_length(col))
        if size > b.max_bytes:
            raise ValidationError(name, over("bytes", b.max_bytes, size), cls.__name__)


def _check_tensor_bound(cls: type[Any], batch: pa.RecordBatch, b: TensorBound) -> None:
    names = batch.column(TENSOR_NAMES)
    _check_bound(cls, TENSOR_NAMES, names, Bound(max_items=b.max_tensors, max_bytes=b.name_bytes))
    shapes = batch.column(TENSOR_SHAPES)
    _check_bound(cls, TENSOR_SHAPES, shapes, Bound(max_items=b.max_tensors))
    rank = _most(shapes.flatten().value_lengths())
    if rank > b.max_rank:
        raise ValidationError(
            TENSOR_SHAPES, over("dims per tensor", b.max_rank, rank), cls.__name__
        )
    _check_bound(cls, TENSOR_DATA, batch.column(TENSOR_DATA), Bound(max_items=b.max_elements))


def _check_limits(cls: type[Any], batch: pa.RecordBatch) -> None:
    """Raise ValidationError for a field over its limit, from lengths and offsets alone.

    Runs on a validated batch before any value becomes a Python object, so an
    oversized string or list is refused without being materialised.
    """
    for name, b in cls.LIMITS.items():
        if isinstance(b, TensorBound):
            _check_tensor_bound(cls, batch, b)
        elif b.max_bytes or b.max_items:
            _check_bound(cls, name, batch.column(name), b)


def _tensors(batch: pa.RecordBatch) -> Tensors:
    names = batch.column(TENSOR_NAMES)[0].as_py()
    shapes = batch.column(TENSOR_SHAPES)[0].as_py()
    if len(names) != len(shapes):
        raise ValidationError(
            TENSOR_SHAPES, f"{len(names)} names but {len(shapes)} shapes", "Tensors"
        )
    manifest = tuple(TensorSpec(n, tuple(s)) for n, s in zip(names, shapes, strict=True))
    flat = batch.column(TENSOR_DATA)[0].values.to_numpy(zero_copy_only=True)
    return Tensors(manifest, flat)


def _values(cls: type[Any], batch: pa.RecordBatch) -> dict[str, Any]:
    views: frozenset[str] = getattr(cls, "VIEW_FIELDS", frozenset())
    kwargs: dict[str, Any] = {}
    for name, kind in cls.FIELD_KINDS:
        if kind is Tensors:
            kwargs[name] = _tensors(batch)
            continue
        scalar = batch.column(name)[0]
        if name in views:
            kwargs[name] = memoryview(scalar.as_buffer())
        elif typing.get_origin(kind) is tuple:
            kwargs[name] = tuple(scalar.as_py())
        else:
            kwargs[name] = scalar.as_py()
    return kwargs


def from_record_batch(batch: pa.RecordBatch, expect: type[M] | None = None) -> M:
    """Build the message held in a one-row record batch, validating every field.

    The batch is validated in full (offsets, sizes, UTF-8) before any value
    is read: reading values of a malformed batch can crash the process.
    """
    cls = message_class(batch.schema)
    if expect is not None and cls is not expect:
        raise UnknownMessageError(f"expected {expect.__name__}, got {cls.__name__}")
    with _arrow_errors():
        batch.validate(full=True)
        _check_offsets(batch)
        _check_columns(cls, batch)
        _check_limits(cls, batch)
        kwargs = _values(cls, batch)
    return typing.cast(M, _build(cls, kwargs))


def _build(cls: type[Any], kwargs: dict[str, Any]) -> Any:
    try:
        return cls(**kwargs)
    except SchemaError:
        raise
    except (TypeError, ValueError) as e:
        raise ValidationError("?", f"cannot build {cls.__name__}: {e}", cls.__name__) from None


def decode_reference(data: bytes | bytearray | memoryview, expect: type[M] | None = None) -> M:
    """Decode one message with pyarrow's IPC stream reader: the definition of the bytes.

    Raises DecodeError, UnknownMessageError, SchemaVersionError or ValidationError.
    """
    return from_record_batch(_read_batch(data), expect)


# ---------------------------------------------------------------- path selection
#
# The one place that chooses between pyarrow and the fast paths. bench.serde
# measures both in the same run; each fast path stays only while it wins
# clearly (bench.serde on the 2-core dev machine, fast path vs pyarrow only):
#   - small messages (CheckIn, Task, a ModelUpdate's header fields): encode
#     13-18 us vs 62-83 us, decode 25-34 us vs 88-128 us;
#   - a 4 MiB ModelUpdate in 512 KiB chunks, the whole round trip: 7.4 GB/s vs
#     1.3 GB/s (the services need 5). The chunk framing is what makes it:
#     with the general fast writer and reader per chunk instead it was ~4 GB/s;
#     parsing one chunk takes 2.5 us vs 76 us.
# Every other input (other writers' framing, anything malformed) goes to pyarrow.

_SCHEMA_BYTES: dict[type[Any], bytes] = {
    cls: _fastpath.schema_message(cls.ARROW_SCHEMA) for cls in MESSAGE_TYPES.values()
}
_CLASS_BY_SCHEMA_BYTES: dict[bytes, type[Any]] = {b: c for c, b in _SCHEMA_BYTES.items()}
_CHUNK_SCHEMA = _SCHEMA_BYTES[chunk.Chunk]
_fast_paths = True


@contextmanager
def reference_only() -> Iterator[None]:
    """Within the block, encode, decode and chunking use pyarrow alone (benchmarks, tests)."""
    global _fast_paths
    saved, _fast_paths = _fast_paths, False
    try:
        yield
    finally:
        _fast_paths = saved


def encode_parts(msg: Any) -> list[Any]:
    """Encode ``msg`` as a list of buffers whose concatenation is the IPC stream.

    On the fast path large buffers (tensor data, chunk payloads) are views of
    the message, not copies, so a caller can gather them straight into their
    destination.
    """
    if not _fast_paths:
        return [_write_stream(to_record_batch(msg))]
    cls = _registered(msg)
    _check_sizes(cls, msg)
    return _fastpath.write_parts(_SCHEMA_BYTES[cls], cls.FIELD_KINDS, msg)


def encode(msg: Any) -> bytes:
    """Encode ``msg`` as an Arrow IPC stream (one copy of the tensor data)."""
    if not _fast_paths:
        return encode_reference(msg)
    return b"".join(encode_parts(msg))


def decode(data: bytes | bytearray | memoryview, expect: type[M] | None = None) -> M:
    """Decode one message from Arrow IPC bytes; tensors are views into ``data``.

    Raises DecodeError, UnknownMessageError, SchemaVersionError or ValidationError.
    """
    if _fast_paths:
        fast = _fastpath.read(data, _CLASS_BY_SCHEMA_BYTES, expect)
        if fast is not None:
            return typing.cast(M, _build(fast[0], fast[1]))
    return decode_reference(data, expect)


ChunkFraming = Callable[[int], tuple[bytes, bytes, bytes]]
"""Payload length -> (before, after, tail); a chunk is before, int64 seq, after, payload, tail."""


def chunk_framing(
    stream_id: bytes, kind: bytes, total: int, total_bytes: int, chunk_size: int, digest: bytes
) -> ChunkFraming | None:
    """Fast framing of one stream's encoded Chunks, or None: encode each Chunk instead.

    The values must be ones ``Chunk`` accepts (the caller has checked them).
    """
    if not _fast_paths:
        return None

    def framing(p: int) -> tuple[bytes, bytes, bytes]:
        return _fastpath.chunk_writer(
            _CHUNK_SCHEMA, stream_id, kind, total, total_bytes, chunk_size, digest, p
        )

    return framing


def read_chunk(data: Any) -> tuple[str, str, int, int, int, int, bytes, memoryview] | None:
    """Fields of an encoded Chunk read by the fast path, or None: decode it instead."""
    if not _fast_paths:
        return None
    try:
        return _fastpath.read_chunk(data, _CHUNK_SCHEMA)
    except (ValueError, TypeError):
        return None
