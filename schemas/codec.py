"""Encode and decode messages as Arrow IPC streams (one schema, one record batch, one row).

Tensors travel as one ``list<float32>`` cell whose values buffer is the flat
buffer itself: encoding writes it once, decoding returns a numpy view into the
received bytes (no copy).
"""

from __future__ import annotations

import typing
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

# Importing the families registers them.
from schemas import (  # noqa: F401
    _ipc,
    artifacts,
    audit,
    checkin,
    chunk,
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
from schemas.tensors import Tensors, TensorSpec

M = TypeVar("M")

MESSAGE_TYPES: dict[str, type[Any]] = dict(REGISTRY)
"""Every message type, by the name carried in the ``fl.type`` schema metadata."""

# Exact schema-message bytes our writer emits -> class: the fast reader's key.
_SCHEMA_BYTES: dict[type[Any], bytes] = {
    cls: _ipc.schema_message(cls.ARROW_SCHEMA) for cls in MESSAGE_TYPES.values()
}
_CLASS_BY_SCHEMA_BYTES: dict[bytes, type[Any]] = {b: c for c, b in _SCHEMA_BYTES.items()}

_NAMES_T, _SHAPES_T, _DATA_T = (f.type for f in TENSOR_FIELDS)
_INT32_MAX = 2**31 - 1


class _Sink:
    """File-like sink that keeps the buffers Arrow writes, without copying them."""

    __slots__ = ("closed", "parts")

    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.closed = False

    def write(self, data: Any) -> int:
        self.parts.append(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _bytes_array(value: bytes | memoryview) -> pa.Array:
    """A one-row binary array over ``value`` without copying it."""
    n = len(value)
    offsets = pa.py_buffer(np.array([0, n], dtype=np.int32))
    return pa.Array.from_buffers(pa.binary(), 1, [None, offsets, pa.py_buffer(value)])


def _tensor_columns(t: Tensors) -> list[pa.Array]:
    flat = np.ascontiguousarray(t.flat)
    n = flat.shape[0]
    if n > _INT32_MAX:
        raise ValidationError("tensors", f"{n} floats exceed the 2**31-1 limit of one message")
    names = pa.array([[s.name for s in t.manifest]], type=_NAMES_T)
    shapes = pa.array([[list(s.shape) for s in t.manifest]], type=_SHAPES_T)
    offsets = pa.py_buffer(np.array([0, n], dtype=np.int32))
    values = pa.Array.from_buffers(pa.float32(), n, [None, pa.py_buffer(flat)])
    data = pa.Array.from_buffers(_DATA_T, 1, [None, offsets], children=[values])
    return [names, shapes, data]


def to_record_batch(msg: Any) -> pa.RecordBatch:
    """The one-row record batch of ``msg`` (tensor data not copied)."""
    cls = type(msg)
    if getattr(cls, "ARROW_SCHEMA", None) is None or MESSAGE_TYPES.get(cls.__name__) is not cls:
        raise UnknownMessageError(f"{cls.__name__} is not a registered message type")
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


def encode_parts(msg: Any) -> list[Any]:
    """Encode ``msg`` as a list of buffers whose concatenation is the IPC stream.

    Large buffers (tensor data, chunk payloads) are views of the message, not
    copies, so a caller can gather them straight into their destination.
    """
    cls = type(msg)
    schema_bytes = _SCHEMA_BYTES.get(cls)
    if schema_bytes is None:
        raise UnknownMessageError(f"{cls.__name__} is not a registered message type")
    if any(
        kind is Tensors and getattr(msg, name).flat.shape[0] > _INT32_MAX
        for name, kind in cls.FIELD_KINDS
    ):
        raise ValidationError("tensors", "more than 2**31-1 floats in one message", cls.__name__)
    return _ipc.write_parts(schema_bytes, cls.FIELD_KINDS, msg)


def encode_with_pyarrow(msg: Any) -> bytes:
    """Encode through pyarrow's own IPC writer (reference path, slower for small messages)."""
    batch = to_record_batch(msg)
    sink = _Sink()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), batch.schema) as writer:
        writer.write_batch(batch)
    return b"".join(sink.parts)


def encode(msg: Any) -> bytes:
    """Encode ``msg`` as an Arrow IPC stream (one copy of the tensor data)."""
    return b"".join(encode_parts(msg))


def _read_batch(data: Any) -> pa.RecordBatch:
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(data))
        batch = reader.read_next_batch()
    except StopIteration:
        raise DecodeError("Arrow IPC stream holds no record batch") from None
    except (pa.ArrowException, OSError, ValueError, TypeError) as e:
        raise DecodeError(f"not a readable Arrow IPC stream: {e}") from None
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


def _same_type(a: pa.DataType, b: pa.DataType) -> bool:
    """Type equality ignoring child field names and nullability (other writers differ)."""
    if pa.types.is_list(a) and pa.types.is_list(b):
        return _same_type(a.value_type, b.value_type)
    return bool(a == b)


def _check_columns(cls: type[Any], batch: pa.RecordBatch) -> None:
    """Raise ValidationError naming the first missing, mistyped or null column."""
    got = batch.schema
    for field in cls.ARROW_SCHEMA:
        idx = got.get_field_index(field.name)
        if idx < 0:
            raise ValidationError(field.name, "missing", cls.__name__)
        if not _same_type(field.type, got.field(idx).type):
            raise ValidationError(
                field.name, f"expected {field.type}, got {got.field(idx).type}", cls.__name__
            )
        col = batch.column(idx)
        while True:
            if col.null_count:
                raise ValidationError(field.name, "must not be null", cls.__name__)
            if not pa.types.is_list(col.type):
                break
            col = col.flatten()


def _tensors(batch: pa.RecordBatch) -> Tensors:
    names = batch.column(TENSOR_NAMES)[0].as_py()
    shapes = batch.column(TENSOR_SHAPES)[0].as_py()
    if len(names) != len(shapes):
        raise ValidationError(
            TENSOR_SHAPES, f"{len(names)} names but {len(shapes)} shapes", "Tensors"
        )
    manifest = tuple(TensorSpec(n, tuple(s)) for n, s in zip(names, shapes, strict=True))
    values = batch.column(TENSOR_DATA)[0].values
    flat = values.to_numpy(zero_copy_only=True)
    return Tensors(manifest, flat)


def from_record_batch(batch: pa.RecordBatch, expect: type[M] | None = None) -> M:
    """Build the message held in a one-row record batch, validating every field."""
    cls = message_class(batch.schema)
    if expect is not None and cls is not expect:
        raise UnknownMessageError(f"expected {expect.__name__}, got {cls.__name__}")
    if not batch.schema.equals(cls.ARROW_SCHEMA):
        _check_columns(cls, batch)
    else:
        for col in batch.columns:
            if col.null_count:
                _check_columns(cls, batch)
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
    return _build(cls, kwargs, None)


def _build(cls: type[Any], kwargs: dict[str, Any], expect: type[M] | None) -> M:
    if expect is not None and cls is not expect:
        raise UnknownMessageError(f"expected {expect.__name__}, got {cls.__name__}")
    try:
        return typing.cast(M, cls(**kwargs))
    except SchemaError:
        raise
    except (TypeError, ValueError) as e:
        raise ValidationError("?", f"cannot build {cls.__name__}: {e}", cls.__name__) from None


def decode(data: bytes | bytearray | memoryview, expect: type[M] | None = None) -> M:
    """Decode one message from Arrow IPC bytes; tensors are views into ``data``.

    Raises DecodeError, UnknownMessageError, SchemaVersionError or ValidationError.
    """
    fast = _ipc.read(data, _CLASS_BY_SCHEMA_BYTES)
    if fast is not None:
        return _build(fast[0], fast[1], expect)
    return from_record_batch(_read_batch(data), expect)
