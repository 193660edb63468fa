"""Size limits of the contract: how large any string, list, tensor or stream may be.

Every variable-size field of every message type has a maximum, declared with
the class (``@message(limits={...})``) from the constants below and printed in
docs/protocol.md by ``python -m schemas.doc``. A receiver rejects anything
over a limit with a ValidationError naming the field, and checks the sizes
from the Arrow buffer lengths and offsets *before* it builds a Python value
(schemas.codec and schemas._fastpath), so a hostile message cannot make it
allocate; :func:`check_limits` checks a built message (senders, and the last
word for receivers). Limits are far above real traffic: ids are 64 ASCII
characters by rule, a device reports a handful of models, a model update of
50M floats is 200 MB.

Strings are limited in UTF-8 bytes (what the wire holds), lists in items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.errors import ValidationError
from schemas.tensors import Tensors

ID_BYTES = 64  # the id rule allows 64 ASCII characters
CODE_BYTES = 128  # machine-readable codes and names: reasons, kinds, versions, digests
DETAIL_BYTES = 4096  # free text for people: rejection and failure details
TOKEN_BYTES = 256  # admission tokens are 41 bytes (flcore.tokens)
SIGNATURE_BYTES = 128  # control signatures are 72 bytes: key id + Ed25519 (flcore.signing)
STREAM_ID_BYTES = 256  # update ids and stream ids: a few ids joined
MAX_MODELS_PER_CHECKIN = 64
MAX_HOSPITALS = 1024
MAX_METRICS = 64
MAX_ARTIFACT_FILES = 64
FILE_NAME_BYTES = 255
MAX_ARTIFACT_BYTES = 2**30  # training, eval and optimizer models, checkpoint: ~5 model copies

MAX_TENSORS = 4096  # per message
TENSOR_NAME_BYTES = 256
MAX_TENSOR_RANK = 8
MAX_TENSOR_ELEMENTS = 50_000_000  # float32 values per message: 200 MB

# Chunk streams (reassembly preallocates total_bytes and one flag per chunk).
MAX_CHUNK_SIZE = 16 * 2**20  # payload bytes per chunk; senders use 512 KiB
MAX_STREAM_BYTES = MAX_ARTIFACT_BYTES + 2**20  # the largest message, with its framing
MAX_CHUNKS = 65_536  # per stream: 1 GiB in chunks of 16 KiB


@dataclass(frozen=True, slots=True)
class Bound:
    """Maximum size of one field: bytes of a str/bytes value or of each str item of a
    list, items of a list, value of an int (0 = not limited in that respect)."""

    max_bytes: int = 0
    max_items: int = 0
    max_value: int = 0

    def describe(self) -> str:
        """Human-readable form for the protocol document."""
        parts = []
        if self.max_items:
            parts.append(f"≤ {self.max_items:,} items")
        if self.max_bytes:
            parts.append(f"{'each ' if self.max_items else ''}≤ {self.max_bytes:,} bytes")
        if self.max_value:
            parts.append(f"≤ {self.max_value:,}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class TensorBound:
    """Limits of a ``Tensors`` field: tensor count, name bytes, rank, total floats."""

    max_tensors: int = MAX_TENSORS
    name_bytes: int = TENSOR_NAME_BYTES
    max_rank: int = MAX_TENSOR_RANK
    max_elements: int = MAX_TENSOR_ELEMENTS

    def describe(self) -> str:
        """Human-readable form for the protocol document."""
        return (
            f"≤ {self.max_tensors:,} tensors, names ≤ {self.name_bytes} bytes, "
            f"≤ {self.max_rank} dims, ≤ {self.max_elements:,} floats in all"
        )


TENSORS = TensorBound()
ID = Bound(max_bytes=ID_BYTES)
CODE = Bound(max_bytes=CODE_BYTES)
DETAIL = Bound(max_bytes=DETAIL_BYTES)
TOKEN = Bound(max_bytes=TOKEN_BYTES)
SIGNATURE = Bound(max_bytes=SIGNATURE_BYTES)

Limit = Bound | TensorBound


def over(what: str, limit: int, got: int) -> str:
    """The problem text of a size over its limit."""
    return f"at most {limit:,} {what}, got {got:,}"


def _utf8_len(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def _check_tensors(b: TensorBound, t: Tensors, type_name: str) -> None:
    if len(t.manifest) > b.max_tensors:
        raise ValidationError(
            "tensor_names", over("tensors", b.max_tensors, len(t.manifest)), type_name
        )
    for spec in t.manifest:
        if _utf8_len(spec.name) > b.name_bytes:
            raise ValidationError(
                "tensor_names",
                over("bytes per name", b.name_bytes, _utf8_len(spec.name)),
                type_name,
            )
        if len(spec.shape) > b.max_rank:
            raise ValidationError(
                "tensor_shapes", over("dims per tensor", b.max_rank, len(spec.shape)), type_name
            )
    if t.flat.shape[0] > b.max_elements:
        raise ValidationError(
            "tensor_data", over("floats", b.max_elements, t.flat.shape[0]), type_name
        )


def check_value(name: str, b: Limit, value: Any, type_name: str) -> None:
    """Raise ValidationError naming ``name`` if ``value`` (already type-checked) is over ``b``."""
    if isinstance(b, TensorBound):
        _check_tensors(b, value, type_name)
        return
    if isinstance(value, tuple):
        if b.max_items and len(value) > b.max_items:
            raise ValidationError(name, over("items", b.max_items, len(value)), type_name)
        items = value
    else:
        items = (value,)
    for v in items:
        if isinstance(v, str):
            # len(v) <= bytes <= 4 * len(v): encode only when it can matter
            if b.max_bytes and len(v) * 4 > b.max_bytes and (n := _utf8_len(v)) > b.max_bytes:
                raise ValidationError(name, over("bytes", b.max_bytes, n), type_name)
        elif isinstance(v, bytes | memoryview):
            n = v.nbytes if isinstance(v, memoryview) else len(v)
            if b.max_bytes and n > b.max_bytes:
                raise ValidationError(name, over("bytes", b.max_bytes, n), type_name)
        elif isinstance(v, int) and b.max_value and v > b.max_value:
            raise ValidationError(name, f"must be <= {b.max_value:,}, got {v:,}", type_name)


def check_limits(msg: Any) -> None:
    """Raise ValidationError for the first field of ``msg`` over its declared limit."""
    limits: dict[str, Limit] = msg.LIMITS
    type_name = type(msg).__name__
    for name, b in limits.items():
        check_value(name, b, getattr(msg, name), type_name)


def fit_text(text: str, max_bytes: int = DETAIL_BYTES) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8 on a character boundary (for details)."""
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode(errors="ignore")
