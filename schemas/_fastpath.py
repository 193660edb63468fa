"""Hand-written Arrow IPC for our one-row messages: the fast paths of the codec.

pyarrow is the reference codec (:mod:`schemas.codec`); this module only goes
faster where bench.serde shows it matters, and :mod:`schemas.codec` is the one
place that decides when it is used. pyarrow's per-call overhead (~5-10 us per
array, writer and reader object) dominates small messages, and chunked large
messages need their Arrow framing computed once per stream, not per chunk.

- ``write_parts`` writes any registered message as standard Arrow IPC, large
  buffers as views (property tests read every output back with pyarrow and
  compare it with pyarrow's own writer);
- ``read`` reads exactly the framing pyarrow's writer and ours produce for our
  schemas and returns None for anything else, which then goes to pyarrow;
- ``chunk_writer`` / ``read_chunk`` do the same for ``Chunk``, the message
  that is both frequent and large.

It stays one module (over 400 lines) so that every hand-written Arrow byte is
in one file: the writers and readers share the flatbuffer layout below.
Nothing here raises on malformed input: the readers return None instead.
"""

from __future__ import annotations

import itertools
import struct
import typing
from typing import Any

import numpy as np
import pyarrow as pa

from schemas import limits
from schemas.errors import SchemaError
from schemas.limits import Bound, Limit, TensorBound
from schemas.tensors import Tensors, TensorSpec

_CONT = b"\xff\xff\xff\xff"
EOS = _CONT + b"\x00\x00\x00\x00"
_BIG = 4096  # buffers at least this large are passed on as views, not copied
_PAD = (b"", b"\0" * 7, b"\0" * 6, b"\0" * 5, b"\0" * 4, b"\0" * 3, b"\0" * 2, b"\0")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_H = struct.Struct("<H")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_OFF2 = struct.Struct("<ii")
# Fixed head of a RecordBatch Message flatbuffer (see _batch_meta for the layout).
_HEAD = struct.Struct("<I6HiIqhBxxxxx5Hxxi2Iq")


class _Bad(Exception):
    """Not our layout: let pyarrow read it (and raise the precise error)."""


def _pad8(n: int) -> int:
    return (n + 7) & ~7


# ----------------------------------------------------------------- writing


class _Body:
    """Body buffers (8-byte aligned), their (offset, length) list and field nodes."""

    __slots__ = ("bufs", "nodes", "parts", "pos", "small")

    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.small = bytearray()
        self.pos = 0
        self.bufs: list[int] = []
        self.nodes: list[int] = []

    def buf(self, data: Any, n: int) -> None:
        self.bufs += (self.pos, n)
        if n >= _BIG:
            if self.small:
                self.parts.append(bytes(self.small))
                self.small = bytearray()
            self.parts.append(data)
        else:
            self.small += data
        self.small += _PAD[n & 7]
        self.pos += (n + 7) & ~7

    def prim(self, length: int, data: Any, n: int) -> None:
        """A non-null primitive/offsets node: empty validity buffer, one data buffer."""
        self.nodes += (length, 0)
        self.bufs += (self.pos, 0)
        self.buf(data, n)

    def var(self, length: int, offsets: list[int], data: Any) -> None:
        """A non-null string/binary or list node: validity, offsets (, data)."""
        self.nodes += (length, 0)
        self.bufs += (self.pos, 0)
        if len(offsets) == 2:
            self.buf(_OFF2.pack(*offsets), 8)
        else:
            self.buf(struct.pack(f"<{len(offsets)}i", *offsets), 4 * len(offsets))
        if data is not None:
            self.buf(data, len(data))


def _cumsum(lengths: list[int]) -> list[int]:
    out = [0]
    for n in lengths:
        out.append(out[-1] + n)
    return out


def _put_strings(body: _Body, items: list[bytes]) -> None:
    """list<string> with one row."""
    body.var(1, [0, len(items)], None)
    body.var(len(items), _cumsum([len(s) for s in items]), b"".join(items))


def _put(body: _Body, kind: Any, v: Any) -> None:
    if kind is str:
        b = v.encode()
        body.var(1, [0, len(b)], b)
    elif kind is bytes:
        body.var(1, [0, len(v)], v)
    elif kind is int:
        body.prim(1, _I64.pack(v), 8)
    elif kind is float:
        body.prim(1, _F64.pack(v), 8)
    elif kind is bool:
        body.prim(1, b"\x01" if v else b"\x00", 1)
    elif kind is Tensors:
        _put_strings(body, [s.name.encode() for s in v.manifest])
        shapes = [s.shape for s in v.manifest]
        dims = [d for s in shapes for d in s]
        body.var(1, [0, len(shapes)], None)
        body.var(len(shapes), _cumsum([len(s) for s in shapes]), None)
        body.prim(len(dims), struct.pack(f"<{len(dims)}q", *dims), 8 * len(dims))
        flat = np.ascontiguousarray(v.flat)
        n = int(flat.shape[0])
        body.var(1, [0, n], None)
        body.prim(n, memoryview(flat).cast("B"), 4 * n)  # type: ignore[arg-type]  # ndarray is a buffer
    else:
        item = typing.get_args(kind)[0]
        if item is str:
            _put_strings(body, [s.encode() for s in v])
        else:
            code = "q" if item is int else "d"
            body.var(1, [0, len(v)], None)
            body.prim(len(v), struct.pack(f"<{len(v)}{code}", *v), 8 * len(v))


def _batch_meta(nodes: list[int], bufs: list[int], body_len: int) -> bytes:
    """Flatbuffer ``Message{version: V5, header: RecordBatch{length: 1, nodes, buffers}}``.

    Layout: root offset @0; Message vtable @4; Message table @16 (header offset
    @20, bodyLength @24, version @32, header_type @34); RecordBatch vtable @40;
    RecordBatch table @52 (nodes offset @56, buffers offset @60, length @64);
    nodes vector count @76, structs @80; buffers vector right after.
    """
    nn, nb = len(nodes) // 2, len(bufs) // 2
    count_pos = 80 + 16 * nn + 4
    size = _pad8(count_pos + 4 + 16 * nb)
    out = bytearray(size)
    _HEAD.pack_into(
        out, 0,
        16, 12, 24, 16, 18, 4, 8,  # root; Message vtable
        12, 32, body_len, 4, 3,  # Message table: soffset, header, bodyLength, V5, RecordBatch
        10, 20, 12, 4, 8,  # RecordBatch vtable
        12, 20, count_pos - 60, 1,  # RecordBatch table: soffset, nodes, buffers, length
    )  # fmt: skip
    _U32.pack_into(out, 76, nn)
    struct.pack_into(f"<{2 * nn}q", out, 80, *nodes)
    _U32.pack_into(out, count_pos, nb)
    struct.pack_into(f"<{2 * nb}q", out, count_pos + 4, *bufs)
    return bytes(out)


def write_parts(schema_bytes: bytes, kinds: tuple[tuple[str, Any], ...], msg: Any) -> list[Any]:
    """IPC stream of ``msg`` as buffers to concatenate; large buffers are views."""
    body = _Body()
    for name, kind in kinds:
        _put(body, kind, getattr(msg, name))
    meta = _batch_meta(body.nodes, body.bufs, body.pos)
    head = b"".join((schema_bytes, _CONT, _I32.pack(len(meta)), meta))
    return [head, *body.parts, bytes(body.small) + EOS]


def schema_message(schema: pa.Schema) -> bytes:
    """The schema message exactly as pyarrow's stream writer frames it."""
    sink = pa.BufferOutputStream()
    pa.ipc.new_stream(sink, schema).close()
    data: bytes = sink.getvalue().to_pybytes()
    assert data.endswith(EOS)
    return data[: -len(EOS)]


# ----------------------------------------------------------------- reading


class _Reader:
    __slots__ = ("blen", "body", "bufs", "data", "mv", "nodes")

    def __init__(self, data: Any, mv: memoryview, body: int, blen: int, nodes: Any, bufs: Any):
        self.data, self.mv, self.body, self.blen = data, mv, body, blen
        self.nodes = iter(nodes)
        self.bufs = iter(bufs)

    def node(self) -> int:
        length: int = next(self.nodes)
        if next(self.nodes):  # null_count
            raise _Bad
        return length

    def buf(self) -> tuple[int, int]:
        off, n = next(self.bufs), next(self.bufs)
        if off < 0 or n < 0 or off + n > self.blen:
            raise _Bad
        return self.body + off, n

    def offsets(self, count: int) -> tuple[int, ...]:
        self.buf()  # validity: absent, nulls already excluded
        pos, n = self.buf()
        if count == 0 and n == 0:  # pyarrow omits the offsets of an empty array
            return (0,)
        if n < 4 * (count + 1):
            raise _Bad
        if count == 1:
            return _OFF2.unpack_from(self.mv, pos)
        return struct.unpack_from(f"<{count + 1}i", self.mv, pos)

    def var1(self) -> tuple[int, int]:
        """(position, length) of the single value of a string/binary node."""
        if self.node() != 1:
            raise _Bad
        a, b = self.offsets(1)
        pos, n = self.buf()
        if not 0 <= a <= b <= n:
            raise _Bad
        return pos + a, b - a

    def list1(self) -> tuple[int, int]:
        """(start, count) of the single row of a list node."""
        if self.node() != 1:
            raise _Bad
        a, b = self.offsets(1)
        if not 0 <= a <= b:
            raise _Bad
        return a, b - a

    def prim(self, fmt: str, start: int, count: int) -> tuple[Any, ...]:
        if self.node() < start + count:
            raise _Bad
        self.buf()
        pos, n = self.buf()
        size = struct.calcsize(fmt)
        if n < size * (start + count):
            raise _Bad
        return struct.unpack_from(f"<{count}{fmt}", self.mv, pos + size * start)

    def strings(self, max_items: int, max_bytes: int) -> list[str]:
        """The single row of a list<string> node; over a limit is _Bad (pyarrow names it)."""
        start, count = self.list1()
        if max_items and count > max_items:
            raise _Bad
        if self.node() < start + count:
            raise _Bad
        offs = self.offsets(start + count)[start:]
        pos, n = self.buf()
        if offs and not 0 <= offs[0] <= offs[-1] <= n:
            raise _Bad
        pairs = list(itertools.pairwise(offs))
        if max_bytes and any(b - a > max_bytes for a, b in pairs):
            raise _Bad
        return [bytes(self.mv[pos + a : pos + b]).decode() for a, b in pairs]


_NO_BOUND = Bound()


def _get(r: _Reader, kind: Any, view: bool, limit: Limit | None) -> Any:
    """One field's value; sizes over ``limit`` are checked before a value is built."""
    b = limit if isinstance(limit, Bound) else _NO_BOUND
    if kind is str or kind is bytes:
        pos, n = r.var1()
        if b.max_bytes and n > b.max_bytes:
            raise _Bad
        if kind is str:
            return str(r.mv[pos : pos + n], "utf-8")
        return r.mv[pos : pos + n] if view else bytes(r.mv[pos : pos + n])
    if kind is int or kind is float or kind is bool:
        if r.node() != 1:
            raise _Bad
        r.buf()
        pos, n = r.buf()
        if kind is bool:
            if n < 1:
                raise _Bad
            return bool(r.mv[pos] & 1)
        if n < 8:
            raise _Bad
        return (_I64 if kind is int else _F64).unpack_from(r.mv, pos)[0]
    if kind is Tensors:
        t = limit if isinstance(limit, TensorBound) else TensorBound()
        names = r.strings(t.max_tensors, t.name_bytes)
        start, count = r.list1()
        if count > t.max_tensors or r.node() < start + count:
            raise _Bad
        offs = r.offsets(start + count)[start:]
        if any(b - a > t.max_rank for a, b in itertools.pairwise(offs)):
            raise _Bad
        dims = r.prim("q", offs[0], offs[-1] - offs[0])  # read even when empty: it is a node
        shapes = [tuple(dims[a - offs[0] : b - offs[0]]) for a, b in itertools.pairwise(offs)]
        if len(shapes) != len(names):
            raise _Bad
        start, n = r.list1()
        if n > t.max_elements or r.node() < start + n:
            raise _Bad
        r.buf()
        pos, size = r.buf()
        if size < 4 * (start + n):
            raise _Bad
        flat = np.frombuffer(r.mv, dtype=np.float32, count=n, offset=pos + 4 * start)
        manifest = tuple(TensorSpec(a, s) for a, s in zip(names, shapes, strict=True))
        return Tensors(manifest, flat)
    item = typing.get_args(kind)[0]
    if item is str:
        return tuple(r.strings(b.max_items, b.max_bytes))
    start, count = r.list1()
    if b.max_items and count > b.max_items:
        raise _Bad
    return r.prim("q" if item is int else "d", start, count)


def _field(data: Any, table: int, index: int) -> int:
    """Absolute position of field ``index`` of a flatbuffer table, or -1 if absent."""
    vt = table - _I32.unpack_from(data, table)[0]
    if 4 + 2 * index >= _H.unpack_from(data, vt)[0]:
        return -1
    off = _H.unpack_from(data, vt + 4 + 2 * index)[0]
    return table + off if off else -1


def read(
    data: Any, schemas: dict[bytes, type[Any]], expect: type[Any] | None = None
) -> tuple[type[Any], dict[str, Any]] | None:
    """(class, field values) of an IPC stream with one of ``schemas``, or None.

    None also when the class is not ``expect``: the reference reader names the
    mismatch before reading any value.
    """
    try:
        return _read(data, schemas, expect)
    except (_Bad, struct.error, IndexError, ValueError, TypeError, StopIteration, SchemaError):
        return None  # UnicodeDecodeError is a ValueError; a bad manifest raises SchemaError


def _read(
    data: Any, schemas: dict[bytes, type[Any]], expect: type[Any] | None
) -> tuple[type[Any], dict[str, Any]] | None:
    mv = memoryview(data).cast("B")
    if mv[:4] != _CONT:
        return None
    end = 8 + _I32.unpack_from(mv, 4)[0]
    cls = schemas.get(bytes(mv[:end]))
    if cls is None or (expect is not None and cls is not expect) or mv[end : end + 4] != _CONT:
        return None
    meta = end + 8
    body = meta + _I32.unpack_from(mv, end + 4)[0]
    root = meta + _U32.unpack_from(mv, meta)[0]
    ht, hdr, bl = _field(mv, root, 1), _field(mv, root, 2), _field(mv, root, 3)
    if ht < 0 or mv[ht] != 3 or hdr < 0 or bl < 0:
        return None
    blen = _I64.unpack_from(mv, bl)[0]
    if body + blen > len(mv):
        return None
    rb = hdr + _U32.unpack_from(mv, hdr)[0]
    f_len, f_nodes, f_bufs = _field(mv, rb, 0), _field(mv, rb, 1), _field(mv, rb, 2)
    if _field(mv, rb, 3) >= 0 or f_len < 0 or f_nodes < 0 or f_bufs < 0:
        return None  # compressed, or not a plain batch
    if _I64.unpack_from(mv, f_len)[0] != 1:
        return None
    nv = f_nodes + _U32.unpack_from(mv, f_nodes)[0]
    bv = f_bufs + _U32.unpack_from(mv, f_bufs)[0]
    nn, nb = _U32.unpack_from(mv, nv)[0], _U32.unpack_from(mv, bv)[0]
    nodes = struct.unpack_from(f"<{2 * nn}q", mv, nv + 4)
    bufs = struct.unpack_from(f"<{2 * nb}q", mv, bv + 4)
    r = _Reader(data, mv, body, blen, nodes, bufs)
    views: frozenset[str] = getattr(cls, "VIEW_FIELDS", frozenset())
    limits: dict[str, Limit] = cls.LIMITS
    kwargs = {
        name: _get(r, kind, name in views, limits.get(name)) for name, kind in cls.FIELD_KINDS
    }
    return cls, kwargs


# ----------------------------------------------------------------- chunks
#
# A Chunk is the one message that is both frequent and large, so it gets its
# own writer and reader: the Arrow framing around the payload depends only on
# the byte lengths of stream_id, kind and payload, and is computed once per
# such triple. The bytes are exactly what ``write_parts`` produces for a Chunk
# (the tests compare them). Body layout, offsets relative to the body start,
# with s/k/p the byte lengths of stream_id/kind/payload and P = _pad8:
#
#   0       stream_id offsets (0, s)      8        stream_id bytes, P(s)
#   A       kind offsets (0, k)           A+8      kind bytes, P(k)
#   B       seq, total, total_bytes, chunk_size (int64 each)
#   B+32    digest offsets (0, 16)        B+40     digest (16 bytes)
#   B+56    payload offsets (0, p)        B+64     payload, P(p)
#
# with A = 8 + P(s), B = A + 8 + P(k).

_CHUNK_NODES = (1, 0) * 8
_CHUNK_TAIL = struct.Struct("<4q2i16s2i")  # at B: seq .. payload offsets
_CHUNK_INTS = struct.Struct("<4q")
_CHUNK_FIXED = struct.Struct("<2i")
_CHUNK_CACHE_MAX = 256


def _chunk_layout(s: int, k: int, p: int) -> tuple[list[int], int, int, int]:
    """(buffers, A, B, body length) of a Chunk body for the given lengths."""
    a = 8 + _pad8(s)
    b = a + 8 + _pad8(k)
    bufs = [0, 0, 0, 8, 8, s]
    bufs += [a, 0, a, 8, a + 8, k]
    for i in range(4):
        bufs += [b + 8 * i, 0, b + 8 * i, 8]
    bufs += [b + 32, 0, b + 32, 8, b + 40, 16]
    bufs += [b + 56, 0, b + 56, 8, b + 64, p]
    return bufs, a, b, b + 64 + _pad8(p)


class ChunkFrame:
    """Everything but the variable values of a Chunk message with lengths (s, k, p).

    ``head`` is the schema message plus the record batch metadata (exactly
    what our writer emits); ``a``/``b``/``body_len`` locate the body fields.
    """

    __slots__ = ("a", "b", "body_len", "head", "p")

    def __init__(self, schema_bytes: bytes, s: int, k: int, p: int) -> None:
        bufs, self.a, self.b, self.body_len = _chunk_layout(s, k, p)
        meta = _batch_meta(list(_CHUNK_NODES), bufs, self.body_len)
        self.head = b"".join((schema_bytes, _CONT, _I32.pack(len(meta)), meta))
        self.p = p


_frames: dict[tuple[int, int, int], ChunkFrame] = {}


def chunk_frame(schema_bytes: bytes, s: int, k: int, p: int) -> ChunkFrame:
    """The (cached) frame of Chunk messages whose fields have these byte lengths."""
    key = (s, k, p)
    frame = _frames.get(key)
    if frame is None:
        if len(_frames) >= _CHUNK_CACHE_MAX:
            _frames.clear()
        frame = _frames[key] = ChunkFrame(schema_bytes, s, k, p)
    return frame


def chunk_writer(
    schema_bytes: bytes,
    stream_id: bytes,
    kind: bytes,
    total: int,
    total_bytes: int,
    chunk_size: int,
    digest: bytes,
    p: int,
) -> tuple[bytes, bytes, bytes]:
    """(before, after, tail): a chunk is ``before + int64(seq) + after + payload + tail``.

    ``digest`` must be 16 bytes; the caller has validated the values.
    """
    f = chunk_frame(schema_bytes, len(stream_id), len(kind), p)
    s, k = len(stream_id), len(kind)
    before = b"".join(
        (
            f.head,
            _CHUNK_FIXED.pack(0, s),
            stream_id,
            _PAD[s & 7],
            _CHUNK_FIXED.pack(0, k),
            kind,
            _PAD[k & 7],
        )
    )
    after = b"".join(
        (
            _I64.pack(total),
            _I64.pack(total_bytes),
            _I64.pack(chunk_size),
            _CHUNK_FIXED.pack(0, 16),
            digest,
            _CHUNK_FIXED.pack(0, p),
        )
    )
    return before, after, _PAD[p & 7] + EOS


# Positions inside the metadata of the buffer lengths the frame depends on:
# metadata starts after the 8-byte continuation + length prefix; buffer i is
# at 80 + 16 * 8 + 8 + 16 * i (see _batch_meta), its length 8 bytes further.
_META_LEN = len(_batch_meta(list(_CHUNK_NODES), [0] * 40, 0))
_LEN_AT = tuple(8 + 80 + 16 * 8 + 8 + 16 * i + 8 for i in (2, 5, 19))


def read_chunk(
    data: Any, schema_bytes: bytes
) -> tuple[str, str, int, int, int, int, bytes, memoryview] | None:
    """Fields of a Chunk our writer framed, payload as a view; None for anything else.

    Only the exact layout our writer emits is accepted, and only values the
    Chunk class would accept (ids, geometry); everything else (other writers,
    bad values, garbage) is left to the general decoder and its precise errors.
    """
    try:
        mv = memoryview(data).cast("B")
    except TypeError:
        return None
    base = len(schema_bytes)
    n = len(mv)
    if n < base + 8 + _META_LEN:
        return None
    s = _I64.unpack_from(mv, base + _LEN_AT[0])[0]
    k = _I64.unpack_from(mv, base + _LEN_AT[1])[0]
    p = _I64.unpack_from(mv, base + _LEN_AT[2])[0]
    if not (0 < s <= limits.STREAM_ID_BYTES and 0 < k <= limits.CODE_BYTES and 0 <= p < n):
        return None
    f = chunk_frame(schema_bytes, s, k, p)
    body = len(f.head)
    if body + f.body_len > n or bytes(mv[:body]) != f.head:
        return None
    a, b = f.a, f.b
    if _CHUNK_FIXED.unpack_from(mv, body) != (0, s):
        return None
    if _CHUNK_FIXED.unpack_from(mv, body + a) != (0, k):
        return None
    seq, total, total_bytes, chunk_size, d0, d1, digest, p0, p1 = _CHUNK_TAIL.unpack_from(
        mv, body + b
    )
    if d0 or d1 != 16 or p0 or p1 != p:
        return None
    try:
        stream_id = str(mv[body + 8 : body + 8 + s], "utf-8")
        kind = str(mv[body + a + 8 : body + a + 8 + k], "utf-8")
    except UnicodeDecodeError:
        return None
    if not (
        0 < chunk_size <= limits.MAX_CHUNK_SIZE
        and 0 <= total_bytes <= limits.MAX_STREAM_BYTES
        and 0 <= seq < total <= limits.MAX_CHUNKS
    ):
        return None
    if total != max(1, -(-total_bytes // chunk_size)):
        return None
    if p != min(chunk_size, total_bytes - seq * chunk_size):
        return None
    start = body + b + 64
    return stream_id, kind, seq, total, total_bytes, chunk_size, digest, mv[start : start + p]
