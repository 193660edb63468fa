"""Property tests: the fast paths of the codec agree with pyarrow, the reference codec.

For generated messages of every registered type (strategies built from each
type's fields, with edge values: empty and non-ASCII strings, int64 limits,
NaN / inf / -0.0, empty and large tensors):

(a) the fast writer's bytes are read back by ``pyarrow.ipc`` into the batch
    pyarrow's own writer produces (same schema and metadata, same bits);
(b) the fast reader agrees with the pyarrow reader on every message pyarrow
    writes, valid or not: the same message, or the same typed rejection;
(c) decoding arbitrary bytes and mutated messages gives a message or a
    ``SchemaError``, never another exception and never a crash. This one runs
    in a child process, so that a native crash of pyarrow is a failing test
    that names its input rather than the end of the test run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import struct
import subprocess
import sys
import tempfile
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from schemas import (
    MESSAGE_TYPES,
    ArtifactBundle,
    Chunk,
    Tensors,
    TensorSpec,
    _fastpath,
    codec,
    limits,
)
from schemas._base import ID_PATTERN, TENSOR_FIELDS
from schemas.chunking import Reassembler, parse_chunk
from schemas.errors import SchemaError, ValidationError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TYPE_NAMES = sorted(MESSAGE_TYPES)
INT64 = (-(2**63), 2**63 - 1)

PROPERTY = settings(
    max_examples=200,
    deadline=None,  # a shared 2-core machine: timing says nothing here
    database=None,
    derandomize=True,  # the same examples on every run: CI stays reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------ values

IDS = st.from_regex(ID_PATTERN, fullmatch=True)
TEXT = st.one_of(
    IDS,
    st.text(max_size=30),
    st.sampled_from(["", "é", "\u65e5\u672c", "\U0001f600", "a\x00b", "\x00", "a\x00", "x" * 300]),
)
INTS = st.one_of(
    st.integers(-2, 10_000),
    st.integers(*INT64),
    st.sampled_from([0, -1, 1, INT64[0], INT64[1], 2**31, -(2**31) - 1]),
)
FLOATS = st.one_of(
    st.floats(-1e3, 1e3),
    st.floats(),  # NaN and +-inf included
    st.sampled_from([0.0, -0.0, 5e-324, 1.7976931348623157e308, math.nan, -math.inf]),
)


def _random_bytes(size: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


BYTES = st.one_of(
    st.binary(max_size=40),
    st.builds(_random_bytes, st.integers(4000, 20_000), st.integers(0, 2**32)),  # view path
)


@st.composite
def tensors(draw: st.DrawFn) -> Tensors:
    """Named float32 tensors: none, scalars, empty dims, up to 300k floats; NaN, inf, -0.0."""
    names = draw(st.lists(st.text(min_size=1, max_size=12), max_size=5, unique=True))
    shapes = [
        tuple(draw(st.lists(st.integers(0, 6), max_size=3))) if draw(st.integers(0, 9)) else ()
        for _ in names
    ]
    if names and draw(st.integers(0, 19)) == 0:
        shapes[0] = (draw(st.integers(4096, 300_000)),)  # one large tensor
    manifest = tuple(TensorSpec(n, s) for n, s in zip(names, shapes, strict=True))
    size = sum(s.size for s in manifest)
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    flat = rng.standard_normal(size, dtype=np.float32)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.4e38], dtype=np.float32)
    if size:
        for _ in range(draw(st.integers(0, 3))):
            flat[draw(st.integers(0, size - 1))] = specials[draw(st.integers(0, 5))]
    return Tensors(manifest, flat)


def values_of(kind: Any) -> st.SearchStrategy[Any]:
    """Any value of a field kind: valid for the Arrow type, not necessarily for the message."""
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: TEXT,
        int: INTS,
        float: FLOATS,
        bool: st.booleans(),
        bytes: BYTES,
        Tensors: tensors(),
    }
    if kind in simple:
        return simple[kind]
    item = typing.get_args(kind)[0]
    return st.lists(simple[item], max_size=6).map(tuple)


_SAFE: dict[Any, Any] = {str: "a1", int: 1, float: 0.5, bool: False, bytes: b"t"}
_SAFE_FIELDS: dict[str, Any] = {"aggregation": "median", "trim_fraction": 0.2}  # narrow fields


@st.composite
def generic_messages(draw: st.DrawFn, cls: type[Any]) -> Any:
    """A valid ``cls``: each field drawn from its kind; a field the class rejects is redrawn
    as a safe value, so every example keeps the edge values its other fields drew."""
    values = {name: draw(values_of(kind)) for name, kind in cls.FIELD_KINDS}
    kinds = dict(cls.FIELD_KINDS)
    redrawn: set[str] = set()
    for _ in range(len(values) + 1):
        try:
            return cls(**values)
        except ValidationError as e:
            if e.field not in values:
                break
            if e.field in redrawn:  # parallel tuples (names and values): empty them all
                values.update({n: () for n, k in kinds.items() if typing.get_origin(k) is tuple})
            values[e.field] = _SAFE_FIELDS.get(e.field, _SAFE.get(kinds[e.field], ()))
            redrawn.add(e.field)
    raise AssertionError(f"no valid {cls.__name__} from {values!r}")


@st.composite
def chunks(draw: st.DrawFn) -> Chunk:
    """A Chunk whose geometry holds: seq < total, payload sized for its place."""
    chunk_size = draw(st.one_of(st.integers(1, 64), st.integers(1, 600_000)))
    most = min(limits.MAX_STREAM_BYTES, chunk_size * limits.MAX_CHUNKS)
    total_bytes = draw(st.one_of(st.integers(0, 3 * chunk_size), st.integers(0, most)))
    total = max(1, -(-total_bytes // chunk_size))
    seq = draw(st.one_of(st.just(0), st.just(total - 1), st.integers(0, total - 1)))
    size = min(chunk_size, total_bytes - seq * chunk_size)
    sid = draw(
        st.one_of(IDS, st.text(min_size=1, max_size=256).filter(lambda s: len(s.encode()) <= 256))
    )
    kind = draw(st.one_of(st.sampled_from(TYPE_NAMES), st.text(min_size=1, max_size=20)))
    payload = _random_bytes(size, draw(st.integers(0, 2**32)))
    digest = draw(st.binary(min_size=16, max_size=16))
    return Chunk(sid, kind, seq, total, total_bytes, chunk_size, digest, payload)


FILE_NAMES = st.text(min_size=1, max_size=20).filter(lambda n: "/" not in n and n[0] != ".")
BUNDLES = st.builds(
    ArtifactBundle.pack,
    IDS,
    st.text(min_size=1, max_size=32),
    st.dictionaries(FILE_NAMES, BYTES, max_size=4),
)
SPECIAL: dict[type[Any], st.SearchStrategy[Any]] = {Chunk: chunks(), ArtifactBundle: BUNDLES}


def messages(cls: type[Any]) -> st.SearchStrategy[Any]:
    """Valid messages of ``cls``."""
    return SPECIAL[cls] if cls in SPECIAL else generic_messages(cls)


def any_message() -> st.SearchStrategy[Any]:
    """A valid message of any registered type."""
    return st.sampled_from(TYPE_NAMES).flatmap(lambda n: messages(MESSAGE_TYPES[n]))


# ------------------------------------------------------------------ comparing


def _bit_type(t: pa.DataType) -> pa.DataType:
    """The same layout with floats as same-width ints: NaN == NaN, -0.0 != 0.0."""
    if pa.types.is_list(t):
        return pa.list_(pa.field("item", _bit_type(t.value_type), t.value_field.nullable))
    return {pa.float32(): pa.int32(), pa.float64(): pa.int64()}.get(t, t)


def _bits(batch: pa.RecordBatch) -> pa.RecordBatch:
    cols = [c.view(_bit_type(c.type)) for c in batch.columns]
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)


def _plain(value: Any) -> Any:
    """A field value as comparable data, floats by their bits."""
    if isinstance(value, float):
        return ("f", struct.pack("<d", value))
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, Tensors):
        return (value.manifest, value.flat.tobytes())
    return value


def _same(a: Any, b: Any) -> bool:
    """Messages equal field by field, bit for bit (NaN equals NaN, -0.0 differs from 0.0)."""
    return type(a) is type(b) and all(
        _plain(getattr(a, f.name)) == _plain(getattr(b, f.name)) for f in dataclasses.fields(a)
    )


def _outcome(decode: typing.Callable[[], Any]) -> Any:
    """("ok", message) or (error type, field): what a reader made of some bytes."""
    try:
        return ("ok", decode())
    except ValidationError as e:
        return (ValidationError, e.field)
    except SchemaError as e:
        return (type(e), None)


def _only_batch(data: bytes) -> pa.RecordBatch:
    batches = list(pa.ipc.open_stream(data))
    assert len(batches) == 1
    batches[0].validate(full=True)
    return batches[0]


# ------------------------------------------------------------------ (a) writer


def test_strategies_cover_every_message_type() -> None:
    assert set(TYPE_NAMES) == {cls.__name__ for cls in MESSAGE_TYPES.values()}
    assert all(isinstance(messages(cls), st.SearchStrategy) for cls in MESSAGE_TYPES.values())


@pytest.mark.parametrize("name", TYPE_NAMES)
@PROPERTY
@given(data=st.data())
def test_fast_writer_bytes_read_by_pyarrow_as_reference_batch(
    name: str, data: st.DataObject
) -> None:
    msg = data.draw(messages(MESSAGE_TYPES[name]))
    fast = b"".join(bytes(memoryview(p).cast("B")) for p in codec.encode_parts(msg))
    reference = codec.encode_reference(msg)
    got, want = _only_batch(fast), _only_batch(reference)
    assert got.schema.equals(want.schema, check_metadata=True)
    assert got.schema.metadata == MESSAGE_TYPES[name].ARROW_SCHEMA.metadata
    assert _bits(got).equals(_bits(want))
    assert _same(codec.decode(fast), msg)
    assert _same(codec.decode_reference(fast), msg)


# ------------------------------------------------------------------ (b) reader


def _raw_columns(kind: Any, value: Any, field_type: pa.DataType) -> list[pa.Array]:
    if kind is Tensors:
        names, shapes, flat = value
        types = [f.type for f in TENSOR_FIELDS]
        return [
            pa.array([names], types[0]),
            pa.array([shapes], types[1]),
            pa.array([np.asarray(flat, np.float32) if flat is not None else None], types[2]),
        ]
    return [pa.array([value], field_type)]


@st.composite
def raw_tensors(draw: st.DrawFn) -> tuple[Any, Any, Any]:
    """Manifest and data that need not agree: bad names, negative dims, wrong lengths, nulls."""
    names = draw(st.lists(st.one_of(st.text(max_size=5), st.none()), max_size=3))
    dims = st.one_of(st.integers(-2, 4), st.none())
    shapes = draw(st.lists(st.one_of(st.lists(dims, max_size=2), st.none()), max_size=3))
    n = draw(st.integers(0, 20))
    flat = draw(st.one_of(st.none(), st.just(np.arange(n, dtype=np.float32))))
    return names, shapes, flat


@st.composite
def pyarrow_written(draw: st.DrawFn, cls: type[Any]) -> bytes:
    """A message of ``cls``'s schema written by pyarrow, up to two fields replaced by
    anything of their Arrow type (null included): many are not valid messages."""
    msg = draw(messages(cls))
    kinds = dict(cls.FIELD_KINDS)
    bad = draw(st.sets(st.sampled_from(sorted(kinds)), max_size=2))
    cols: list[pa.Array] = []
    batch = codec.to_record_batch(msg)
    for name, kind in cls.FIELD_KINDS:
        if name not in bad:
            if kind is Tensors:
                cols.extend(batch.column(f.name) for f in TENSOR_FIELDS)
            else:
                cols.append(batch.column(name))
            continue
        value = draw(
            st.one_of(raw_tensors(), st.none().map(lambda _: (None, None, None)))
            if kind is Tensors
            else st.one_of(values_of(kind), st.none())
        )
        field_type = None if kind is Tensors else cls.ARROW_SCHEMA.field(name).type
        cols.extend(_raw_columns(kind, value, field_type))
    written = pa.RecordBatch.from_arrays(cols, schema=cls.ARROW_SCHEMA)
    return typing.cast(bytes, codec._write_stream(written).to_pybytes())


@pytest.mark.parametrize("name", TYPE_NAMES)
@PROPERTY
@given(data=st.data())
def test_fast_reader_agrees_with_pyarrow_on_what_pyarrow_writes(
    name: str, data: st.DataObject
) -> None:
    wire = data.draw(pyarrow_written(MESSAGE_TYPES[name]))
    want = _outcome(lambda: codec.decode_reference(wire))
    fast = _fastpath.read(wire, codec._CLASS_BY_SCHEMA_BYTES)
    event(f"pyarrow reader: {'message' if want[0] == 'ok' else want[0].__name__}")
    event(f"fast reader: {'declined' if fast is None else 'read'}")
    if fast is None:  # declined: decode() hands it to pyarrow
        assert want[0] != "ok", "the fast reader declined a valid message"
        return
    got = _outcome(lambda: codec._build(*fast))
    if want[0] == "ok":
        assert got[0] == "ok"
        assert _same(got[1], want[1])
    else:
        assert got == want


# ------------------------------------------------------------------ (c) hostile bytes

EDGE_INTS = [-1, 0, 7, 8, 2**31 - 1, -(2**31), 2**30, 1 << 20]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid message (fast or pyarrow framing) with bytes flipped, overwritten, cut or added.

    Positions are uniform, mostly past the schema message (the record batch's
    metadata and body, where lengths and offsets live), often 4-byte aligned.
    """
    msg = draw(any_message())
    data = bytearray(draw(st.sampled_from([codec.encode, codec.encode_reference]))(msg))
    start = len(codec._SCHEMA_BYTES[type(msg)])
    rnd = draw(st.randoms(use_true_random=False))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        lo = 0 if draw(st.integers(0, 3)) == 0 or start >= len(data) else start
        pos = rnd.randrange(lo, len(data))
        if draw(st.booleans()):
            pos -= pos % 4
        op = draw(st.integers(0, 4))
        if op == 0:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == 1 and pos + 4 <= len(data):
            struct.pack_into("<i", data, pos, draw(st.sampled_from(EDGE_INTS)))
        elif op == 2 and pos + 8 <= len(data):
            struct.pack_into("<q", data, pos, draw(st.sampled_from([*EDGE_INTS, 2**62, -(2**62)])))
        elif op == 3:
            del data[pos:]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


HOSTILE = st.one_of(
    mutated(),
    st.binary(max_size=600),
    st.builds(
        lambda s, tail: s + tail,
        st.sampled_from(sorted(codec._SCHEMA_BYTES.values())),
        st.binary(max_size=600),
    ),
)


def _accepts_or_rejects(data: bytes) -> None:
    """Every ingress decoder gives a result or a SchemaError; anything else escapes."""
    for decode in (codec.decode, codec.decode_reference, parse_chunk):
        with contextlib.suppress(SchemaError):
            decode(data)
    with contextlib.suppress(SchemaError):
        Reassembler().add_encoded(data, 0)


def hostile_input_check(examples: int, last_input: Path) -> None:
    """Run property (c) in this process, writing each input to ``last_input`` first."""

    @settings(PROPERTY, max_examples=examples)
    @given(data=HOSTILE)
    def check(data: bytes) -> None:
        last_input.write_bytes(data)
        _accepts_or_rejects(data)

    check()


def test_decode_of_hostile_bytes_is_a_message_or_schema_error() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        last = Path(tmp) / "last_input"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        run = subprocess.run(
            [sys.executable, "-m", "tests.unit.test_schemas_codec_properties", "3000", str(last)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        crashed_on = last.read_bytes() if run.returncode < 0 and last.exists() else b""
    assert run.returncode == 0, (
        f"exit {run.returncode}"
        + (
            f"; crashed on {len(crashed_on)} bytes: {crashed_on[:256].hex()}..."
            if crashed_on
            else ""
        )
        + f"\n{run.stdout[-3000:]}{run.stderr[-3000:]}"
    )
    assert "examples passed" in run.stdout


if __name__ == "__main__":
    hostile_input_check(int(sys.argv[1]), Path(sys.argv[2]))
    print(f"{sys.argv[1]} examples passed")
