"""Message machinery: Arrow schema derived from dataclass fields, checks, registry.

A message class is a frozen dataclass decorated with :func:`message`. Its field
annotations (``str``, ``int``, ``float``, ``bool``, ``bytes``, ``tuple[str, ...]``,
``tuple[int, ...]``, ``tuple[float, ...]``, ``Tensors``) fix its Arrow schema, so
the class, its schema and the protocol document cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeVar

import pyarrow as pa

from schemas import limits as _limits
from schemas.errors import ValidationError
from schemas.tensors import Tensors

META_TYPE = b"fl.type"
META_VERSION = b"fl.schema_version"

# Column names a Tensors field expands to; the field itself is named ``tensors``.
TENSOR_NAMES = "tensor_names"
TENSOR_SHAPES = "tensor_shapes"
TENSOR_DATA = "tensor_data"

_ARROW_TYPES: dict[Any, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    bytes: pa.binary(),
    tuple[str, ...]: pa.list_(pa.field("item", pa.string(), nullable=False)),
    tuple[int, ...]: pa.list_(pa.field("item", pa.int64(), nullable=False)),
    tuple[float, ...]: pa.list_(pa.field("item", pa.float64(), nullable=False)),
}

TENSOR_FIELDS = (
    pa.field(TENSOR_NAMES, pa.list_(pa.field("item", pa.string(), nullable=False)), False),
    pa.field(
        TENSOR_SHAPES,
        pa.list_(pa.field("item", pa.list_(pa.field("item", pa.int64(), False)), False)),
        False,
    ),
    pa.field(TENSOR_DATA, pa.list_(pa.field("item", pa.float32(), nullable=False)), False),
)


class Message(Protocol):
    """What every registered message class provides."""

    ARROW_SCHEMA: ClassVar[pa.Schema]
    SCHEMA_VERSION: ClassVar[int]
    SUPPORTED_VERSIONS: ClassVar[tuple[int, ...]]
    FIELD_KINDS: ClassVar[tuple[tuple[str, Any], ...]]
    LIMITS: ClassVar[dict[str, _limits.Limit]]
    UNDECLARED_LIMITS: ClassVar[tuple[str, ...]]


REGISTRY: dict[str, type[Any]] = {}

M = TypeVar("M")


# Limits of a variable-size field whose class declares none (a test requires a
# declaration for every such field; these only keep decoding bounded meanwhile).
_DEFAULT_LIMITS: dict[Any, _limits.Limit] = {
    str: _limits.DETAIL,
    bytes: _limits.Bound(max_bytes=_limits.MAX_CHUNK_SIZE),
    tuple[str, ...]: _limits.Bound(max_items=1024, max_bytes=_limits.DETAIL_BYTES),
    tuple[int, ...]: _limits.Bound(max_items=1024),
    tuple[float, ...]: _limits.Bound(max_items=1024),
    Tensors: _limits.TENSORS,
}


def _limits_of(name: str, kinds: dict[str, Any], declared: dict[str, _limits.Limit]) -> Any:
    """(limits of every field that has one, names of variable fields that declared none)."""
    unknown = set(declared) - set(kinds)
    if unknown:
        raise TypeError(f"{name}: limits for unknown fields {sorted(unknown)}")
    out: dict[str, _limits.Limit] = {}
    undeclared: list[str] = []
    for field, kind in kinds.items():
        if field in declared:
            limit = declared[field]
            if isinstance(limit, _limits.TensorBound) != (kind is Tensors):
                raise TypeError(f"{name}.{field}: a Tensors field takes a TensorBound")
            out[field] = limit
        elif kind in _DEFAULT_LIMITS:
            out[field] = _DEFAULT_LIMITS[kind]
            undeclared.append(field)
    return out, tuple(undeclared)


def message(
    version: int = 1, limits: dict[str, _limits.Limit] | None = None
) -> Callable[[type[M]], type[M]]:
    """Class decorator: attach the Arrow schema and limits, register the message type.

    ``limits`` bounds every variable-size field (str, bytes, tuples, Tensors)
    and any int field that sizes something (schemas.limits).
    """

    def wrap(cls: type[M]) -> type[M]:
        hints = typing.get_type_hints(cls)
        kinds: list[tuple[str, Any]] = []
        fields: list[pa.Field] = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            kind = hints[f.name]
            kinds.append((f.name, kind))
            if kind is Tensors:
                fields.extend(TENSOR_FIELDS)
            else:
                fields.append(pa.field(f.name, _ARROW_TYPES[kind], nullable=False))
        name = cls.__name__
        if name in REGISTRY:
            raise TypeError(f"message type {name} registered twice")
        meta = {META_TYPE: name.encode(), META_VERSION: str(version).encode()}
        cls.ARROW_SCHEMA = pa.schema(fields, metadata=meta)  # type: ignore[attr-defined]
        cls.SCHEMA_VERSION = version  # type: ignore[attr-defined]
        cls.SUPPORTED_VERSIONS = (version,)  # type: ignore[attr-defined]
        cls.FIELD_KINDS = tuple(kinds)  # type: ignore[attr-defined]
        bounds, undeclared = _limits_of(name, dict(kinds), limits or {})
        cls.LIMITS = bounds  # type: ignore[attr-defined]
        cls.UNDECLARED_LIMITS = undeclared  # type: ignore[attr-defined]
        REGISTRY[name] = cls
        return cls

    return wrap


def check_types(msg: Any) -> None:
    """Check (and normalise: list -> tuple, numpy scalar -> Python) every field's type,
    then every field's size against the limits of its class."""
    cls_name = type(msg).__name__
    for name, kind in msg.FIELD_KINDS:
        value = getattr(msg, name)
        try:
            fixed = _coerce(kind, value)
        except _Wrong as e:
            raise ValidationError(name, str(e), cls_name) from None
        if fixed is not value:
            object.__setattr__(msg, name, fixed)
    _limits.check_limits(msg)


class _Wrong(Exception):
    pass


def _coerce(kind: Any, value: Any) -> Any:
    if type(value) is kind:  # the common case, without the isinstance chain (bool is not int)
        return value
    if kind is str:
        if not isinstance(value, str):
            raise _Wrong(f"expected str, got {type(value).__name__}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise _Wrong(f"expected bool, got {type(value).__name__}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise _Wrong(f"expected int, got {type(value).__name__}")
        return value if type(value) is int else int(value)  # type: ignore[comparison-overlap]
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise _Wrong(f"expected float, got {type(value).__name__}")
        return value if type(value) is float else float(value)  # type: ignore[comparison-overlap]
    if kind is bytes:
        if isinstance(value, bytearray):
            return bytes(value)
        if isinstance(value, memoryview):  # zero-copy views (e.g. decoded chunk payloads)
            return value
        if not isinstance(value, bytes):
            raise _Wrong(f"expected bytes, got {type(value).__name__}")
        return value
    if kind is Tensors:
        if not isinstance(value, Tensors):
            raise _Wrong(f"expected Tensors, got {type(value).__name__}")
        return value
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, tuple | list):
            raise _Wrong(f"expected a tuple, got {type(value).__name__}")
        item = typing.get_args(kind)[0]
        items = tuple(_coerce(item, v) for v in value)
        return (
            value
            if type(value) is tuple and all(a is b for a, b in zip(items, value, strict=True))
            else items
        )
    raise TypeError(f"unsupported field kind {kind!r}")


ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
ID_RULE = "1-64 chars of [A-Za-z0-9_-], starting with a letter or digit"


def is_valid_id(value: str) -> bool:
    """Whether ``value`` is safe as an id inside MQTT and Kafka topic names."""
    return ID_PATTERN.fullmatch(value) is not None


def ids(msg: Any, *names: str, optional: bool = False) -> None:
    """Require each named field (str or tuple of str) to hold topic-safe ids."""
    for n in names:
        v = getattr(msg, n)
        for x in v if isinstance(v, tuple) else (v,):
            if optional and x == "":
                continue
            if not is_valid_id(x):
                raise ValidationError(n, f"must be {ID_RULE}, got {x!r}", type(msg).__name__)


def non_empty(msg: Any, *names: str) -> None:
    """Require each named str/bytes field to be non-empty."""
    for n in names:
        if not getattr(msg, n):
            raise ValidationError(n, "must not be empty", type(msg).__name__)


def non_negative(msg: Any, *names: str) -> None:
    """Require each named int/float field to be >= 0."""
    for n in names:
        v = getattr(msg, n)
        if v < 0:
            raise ValidationError(n, f"must be >= 0, got {v!r}", type(msg).__name__)


def positive(msg: Any, *names: str) -> None:
    """Require each named int/float field to be > 0."""
    for n in names:
        v = getattr(msg, n)
        if v <= 0:
            raise ValidationError(n, f"must be > 0, got {v!r}", type(msg).__name__)


def finite(msg: Any, *names: str) -> None:
    """Require each named float field (or tuple of floats) to be finite."""
    for n in names:
        v = getattr(msg, n)
        values = v if isinstance(v, tuple) else (v,)
        if not all(math.isfinite(x) for x in values):
            raise ValidationError(n, f"must be finite, got {v!r}", type(msg).__name__)


def in_range(msg: Any, name: str, lo: float, hi: float) -> None:
    """Require a numeric field to lie in the closed interval [lo, hi]."""
    v = getattr(msg, name)
    if not lo <= v <= hi:
        raise ValidationError(name, f"must be in [{lo}, {hi}], got {v!r}", type(msg).__name__)


def one_of(msg: Any, name: str, allowed: tuple[str, ...]) -> None:
    """Require a str field to be one of ``allowed``."""
    v = getattr(msg, name)
    if v not in allowed:
        raise ValidationError(name, f"must be one of {allowed}, got {v!r}", type(msg).__name__)


def same_length(msg: Any, *names: str) -> None:
    """Require parallel tuple fields to have equal lengths."""
    lengths = {n: len(getattr(msg, n)) for n in names}
    if len(set(lengths.values())) > 1:
        raise ValidationError(
            names[-1], f"parallel fields differ in length: {lengths}", type(msg).__name__
        )
