"""Split large encoded messages into bounded chunks and put them back together.

A payload (normally the Arrow IPC encoding of a ``ModelUpdate`` or
``ModelVersion``) is cut into ``total`` pieces of ``chunk_size`` bytes (the last
one shorter); every chunk carries the xxh3_128 digest of the whole payload. The
receiver preallocates one buffer of ``total_bytes`` and writes each piece at
``seq * chunk_size``: duplicates and reordering are harmless, and the payload is
held exactly once. Time is passed in (``now_ms``); there is no clock here.

Encoded chunks are framed by :mod:`schemas.codec`: its fast chunk framing
where it chooses so, else ``encode`` of each ``Chunk`` (same size). The module
stays whole (~450 lines) because both halves rest on the same chunk geometry.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import numpy as np
import xxhash

from schemas import codec
from schemas.chunk import DIGEST_BYTES, Chunk
from schemas.codec import MESSAGE_TYPES, decode, encode, encode_parts
from schemas.errors import (
    ChunkError,
    DigestMismatchError,
    InconsistentChunkError,
    UnknownMessageError,
    UnknownStreamError,
)
from schemas.limits import CODE_BYTES, MAX_STREAM_BYTES, STREAM_ID_BYTES

M = TypeVar("M")

DEFAULT_MAX_CHUNK_BYTES = 512 * 1024
"""Default bound on one encoded ``Chunk`` message, Arrow framing included."""

DEFAULT_TIMEOUT_MS = 10 * 60 * 1000
DEFAULT_MAX_PAYLOAD_BYTES = MAX_STREAM_BYTES  # the contract's limit; a receiver may set less

_overhead_cache: dict[tuple[int, int], int] = {}
_I64 = struct.Struct("<q")

ChunkFields = tuple[str, str, int, int, int, int, bytes, Any]
"""(stream_id, kind, seq, total, total_bytes, chunk_size, digest, payload) of one chunk."""


def digest(data: bytes | bytearray | memoryview) -> bytes:
    """xxh3_128 of ``data``, 16 bytes, canonical (big-endian) form."""
    return xxhash.xxh3_128_digest(data)


def chunk_overhead(stream_id: str, kind: str) -> int:
    """Encoded size of a Chunk beyond its payload bytes (plus 8 for payload padding)."""
    key = (len(stream_id.encode()), len(kind.encode()))
    size = _overhead_cache.get(key)
    if size is None:
        probe = Chunk(stream_id, kind, 0, 1, 0, 1, bytes(DIGEST_BYTES), b"")
        size = len(encode(probe)) + 8
        _overhead_cache[key] = size
    return size


def payload_per_chunk(stream_id: str, kind: str, max_chunk_bytes: int) -> int:
    """Largest payload slice whose encoded Chunk stays within ``max_chunk_bytes``."""
    room = max_chunk_bytes - chunk_overhead(stream_id, kind)
    room -= room % 8  # keep chunk offsets 8-byte aligned in the reassembled buffer
    if room < 8:
        raise ValueError(f"max_chunk_bytes={max_chunk_bytes} leaves no room for a payload")
    return room


@dataclass(frozen=True, slots=True)
class _Cut:
    """How one payload (given as parts) is cut into chunks."""

    views: list[memoryview]
    digest: bytes
    total_bytes: int
    size: int
    total: int

    def pieces(self) -> Iterator[list[memoryview]]:
        """Per seq, the slices of the parts that make up its payload (views, no copy)."""
        part, pos = 0, 0  # index of the current view, offset inside it
        for seq in range(self.total):
            want = min(self.size, self.total_bytes - seq * self.size)
            pieces: list[memoryview] = []
            while want:
                v = self.views[part]
                take = min(want, len(v) - pos)
                pieces.append(v[pos : pos + take])
                want -= take
                pos += take
                if pos == len(v):
                    part, pos = part + 1, 0
            yield pieces


def _cut(parts: Sequence[Any], stream_id: str, kind: str, max_chunk_bytes: int) -> _Cut:
    views = [v for v in (memoryview(p).cast("B") for p in parts) if len(v)]
    hasher = xxhash.xxh3_128()
    for v in views:
        hasher.update(v)
    total_bytes = sum(len(v) for v in views)
    size = payload_per_chunk(stream_id, kind, max_chunk_bytes)
    return _Cut(views, hasher.digest(), total_bytes, size, max(1, -(-total_bytes // size)))


def _split_parts(
    parts: Sequence[Any], stream_id: str, kind: str, max_chunk_bytes: int
) -> Iterator[Chunk]:
    cut = _cut(parts, stream_id, kind, max_chunk_bytes)
    for seq, pieces in enumerate(cut.pieces()):
        payload: bytes | memoryview = (
            pieces[0] if len(pieces) == 1 else b"".join(pieces) if pieces else b""
        )
        # A view of the payload, not a copy: Chunk.payload is declared bytes for the
        # schema, and the codec reads any buffer.
        yield Chunk(stream_id, kind, seq, cut.total, cut.total_bytes, cut.size, cut.digest, payload)  # type: ignore[arg-type]


def split(
    payload: bytes | bytearray | memoryview,
    *,
    stream_id: str,
    kind: str,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
) -> Iterator[Chunk]:
    """Cut ``payload`` into Chunks whose encoding is at most ``max_chunk_bytes`` each.

    Chunk payloads are views of ``payload`` (no copy until each Chunk is encoded).
    """
    return _split_parts([payload], stream_id, kind, max_chunk_bytes)


def encode_chunked(
    msg: Any, stream_id: str, max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES
) -> list[bytes]:
    """Encode ``msg`` and split it into encoded Chunk messages (tensor data copied once).

    Each chunk is written in one pass: its fixed Arrow framing, computed once
    per stream, around the payload slice (byte-identical to ``encode(Chunk(...))``).
    """
    return encode_parts_chunked(encode_parts(msg), stream_id, type(msg).__name__, max_chunk_bytes)


def encode_parts_chunked(
    parts: Sequence[Any], stream_id: str, kind: str, max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES
) -> list[bytes]:
    """Encoded Chunk messages of the payload ``b"".join(parts)`` (never joined itself)."""
    try:
        ok = (
            isinstance(stream_id, str)
            and isinstance(kind, str)
            and len(stream_id) > 0
            and len(kind) > 0
        )
        sid_b, kind_b = (stream_id.encode(), kind.encode()) if ok else (b"", b"")
        ok = ok and len(sid_b) <= STREAM_ID_BYTES and len(kind_b) <= CODE_BYTES
    except UnicodeEncodeError:
        ok = False
    if not ok:  # Chunk's own checks raise the precise error
        return [encode(c) for c in _split_parts(parts, stream_id, kind, max_chunk_bytes)]
    cut = _cut(parts, stream_id, kind, max_chunk_bytes)
    framing = codec.chunk_framing(sid_b, kind_b, cut.total, cut.total_bytes, cut.size, cut.digest)
    if framing is None:
        return [encode(c) for c in _split_parts(parts, stream_id, kind, max_chunk_bytes)]
    full = framing(cut.size) if cut.total_bytes >= cut.size else None
    out: list[bytes] = []
    for seq, pieces in enumerate(cut.pieces()):
        want = min(cut.size, cut.total_bytes - seq * cut.size)
        before, after, tail = full if want == cut.size and full else framing(want)
        out.append(b"".join((before, _I64.pack(seq), after, *pieces, tail)))
    return out


def parse_chunk(data: bytes | bytearray | memoryview) -> ChunkFields:
    """Fields of one encoded Chunk; the payload is a view into ``data``.

    Chunks framed as our writer frames them are read directly; anything else
    (other Arrow writers, bad values, garbage) goes through the general
    decoder, which raises DecodeError, SchemaVersionError, UnknownMessageError,
    ValidationError or InconsistentChunkError naming the problem.
    """
    fields = codec.read_chunk(data)
    if fields is not None:
        return fields
    c = decode(data, Chunk)
    return (
        c.stream_id,
        c.kind,
        c.seq,
        c.total,
        c.total_bytes,
        c.chunk_size,
        bytes(c.digest),
        c.payload,
    )


class Completed(NamedTuple):
    """A reassembled, verified payload: the receiver's buffer itself."""

    stream_id: str
    kind: str
    payload: memoryview


@dataclass(slots=True)
class _Stream:
    kind: str
    total: int
    total_bytes: int
    chunk_size: int
    digest: bytes
    buf: memoryview  # over an uninitialised numpy buffer, see _open
    seen: bytearray  # one flag per seq
    received: int
    last_ms: int


class Reassembler:
    """Collect chunks of many streams; hand back each payload once, verified.

    A stream with no new chunk for ``timeout_ms`` is dropped by :meth:`expire`;
    later chunks of it raise UnknownStreamError. Late duplicates of a completed
    stream (same id and digest) are ignored; a stream reusing a completed id with
    another digest is a new stream (a forged stream that took a version's id
    first must not shadow the genuine one). Neither memory is unbounded: the last
    ``remember`` ids of each are kept.
    """

    def __init__(
        self,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        *,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        remember: int = 4096,
    ) -> None:
        self.timeout_ms = timeout_ms
        self.max_payload_bytes = max_payload_bytes
        self._remember = remember
        self._streams: dict[str, _Stream] = {}
        self._completed: OrderedDict[str, bytes] = OrderedDict()  # id -> digest
        self._expired: OrderedDict[str, None] = OrderedDict()

    def add(self, chunk: Chunk, now_ms: int) -> memoryview | None:
        """Accept one chunk; return the whole payload when this chunk completes it.

        The returned (writable) memoryview is the reassembly buffer itself (no final copy).
        Raises InconsistentChunkError, DigestMismatchError, UnknownStreamError.
        """
        return self._add(
            chunk.stream_id,
            chunk.kind,
            chunk.seq,
            chunk.total,
            chunk.total_bytes,
            chunk.chunk_size,
            chunk.digest,
            chunk.payload,
            now_ms,
        )

    def add_encoded(self, data: bytes | bytearray | memoryview, now_ms: int) -> Completed | None:
        """Decode one encoded Chunk and accept it; return the payload when complete.

        Same checks and errors as :meth:`add`, plus those of decoding (see
        :func:`parse_chunk`), without building a Chunk object.
        """
        fields = parse_chunk(data)
        payload = self._add(*fields, now_ms)
        return None if payload is None else Completed(fields[0], fields[1], payload)

    def _add(
        self,
        sid: str,
        kind: str,
        seq: int,
        total: int,
        total_bytes: int,
        chunk_size: int,
        dig: bytes,
        payload: Any,
        now_ms: int,
    ) -> memoryview | None:
        st = self._streams.get(sid)
        if st is None:
            if self._completed.get(sid) == dig:
                return None
            if sid in self._expired:
                raise UnknownStreamError(
                    f"stream {sid!r} expired (no chunk for {self.timeout_ms} ms); "
                    f"chunk {seq} dropped"
                )
            st = self._open(sid, kind, total, total_bytes, chunk_size, dig, now_ms)
        elif (
            st.total != total
            or st.chunk_size != chunk_size
            or st.total_bytes != total_bytes
            or st.kind != kind
            or st.digest != dig
        ):
            self._inconsistent(st, sid, seq, kind, total, total_bytes, chunk_size, dig)
        st.last_ms = now_ms
        if st.seen[seq]:
            return None
        if type(payload) is not bytes:
            payload = memoryview(payload).cast("B")
        start = seq * st.chunk_size
        st.buf[start : start + len(payload)] = payload
        st.seen[seq] = 1
        st.received += 1
        if st.received < st.total:
            return None
        del self._streams[sid]
        if digest(st.buf) != st.digest:
            raise DigestMismatchError(
                f"stream {sid!r}: digest of {st.total_bytes} reassembled bytes does not match"
            )
        self._note(self._completed, sid, st.digest)
        return st.buf

    def _open(
        self,
        sid: str,
        kind: str,
        total: int,
        total_bytes: int,
        chunk_size: int,
        dig: bytes,
        now_ms: int,
    ) -> _Stream:
        if total_bytes > self.max_payload_bytes:
            raise ChunkError(
                f"stream {sid!r}: {total_bytes} bytes exceed the "
                f"{self.max_payload_bytes} byte limit"
            )
        st = _Stream(
            kind,
            total,
            total_bytes,
            chunk_size,
            bytes(dig),
            # Not zero-filled (np.empty): the chunk geometry covers every byte
            # exactly once before the buffer is handed out, and zeroing 4 MiB
            # first costs ~60 us of a ~600 us round trip (bench.serde).
            np.empty(total_bytes, dtype=np.uint8).data,
            bytearray(total),
            0,
            now_ms,
        )
        self._streams[sid] = st
        return st

    @staticmethod
    def _inconsistent(
        st: _Stream,
        sid: str,
        seq: int,
        kind: str,
        total: int,
        total_bytes: int,
        chunk_size: int,
        dig: bytes,
    ) -> None:
        got = {
            "kind": kind,
            "total": total,
            "total_bytes": total_bytes,
            "chunk_size": chunk_size,
            "digest": bytes(dig),
        }
        for name, value in got.items():
            have = getattr(st, name)
            if have != value:
                raise InconsistentChunkError(
                    f"stream {sid!r} chunk {seq}: {name} {value!r} "
                    f"differs from earlier chunks ({have!r})"
                )

    def _note(self, memory: OrderedDict[str, Any], sid: str, value: Any = None) -> None:
        memory[sid] = value
        memory.move_to_end(sid)
        while len(memory) > self._remember:
            memory.popitem(last=False)

    def expire(self, now_ms: int) -> list[str]:
        """Forget incomplete streams idle for ``timeout_ms`` or more; return their ids."""
        gone = [s for s, st in self._streams.items() if now_ms - st.last_ms >= self.timeout_ms]
        for sid in gone:
            del self._streams[sid]
            self._note(self._expired, sid)
        return gone

    def drop(self, stream_id: str) -> None:
        """Forget an incomplete stream now, as if it had expired (later chunks are refused)."""
        if self._streams.pop(stream_id, None) is not None:
            self._note(self._expired, stream_id)

    def missing(self, stream_id: str) -> list[int]:
        """Sequence numbers not yet received for an open stream."""
        st = self._streams.get(stream_id)
        if st is None:
            raise UnknownStreamError(f"no open stream {stream_id!r}")
        return [i for i, f in enumerate(st.seen) if not f]

    @property
    def pending(self) -> list[str]:
        """Ids of incomplete streams held now."""
        return list(self._streams)

    @property
    def held_bytes(self) -> int:
        """Bytes preallocated for incomplete streams."""
        return sum(st.total_bytes for st in self._streams.values())


StreamDecoder = Callable[[type, bytes, memoryview], Any]
"""(message class, verified stream digest, reassembled payload) -> the decoded message."""


def decode_stream(cls: type, _digest: bytes, payload: memoryview) -> Any:
    """The default :data:`StreamDecoder`: decode the payload (zero-copy over the buffer)."""
    return decode(payload, cls)


class ChunkedReceiver:
    """Decode encoded Chunk messages, reassemble, and decode each completed message.

    ``decoder`` decodes a completed stream; a simulator whose devices all receive
    the same streams passes one that decodes each (class, digest) once.
    """

    def __init__(
        self,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        decoder: StreamDecoder = decode_stream,
        **kwargs: Any,
    ) -> None:
        self.reassembler = Reassembler(timeout_ms, **kwargs)
        self._decoder = decoder

    def add(self, data: bytes | bytearray | memoryview, now_ms: int) -> Any | None:
        """Feed one encoded Chunk; return the decoded message when its stream completes.

        The message is decoded zero-copy over the reassembly buffer.
        """
        fields = parse_chunk(data)
        kind = fields[1]
        cls = MESSAGE_TYPES.get(kind)
        if cls is None:
            raise UnknownMessageError(f"chunk of unknown message type {kind!r}")
        payload = self.reassembler._add(*fields, now_ms)
        if payload is None:
            return None
        return self._decoder(cls, fields[6], payload)  # the digest the payload matched

    def expire(self, now_ms: int) -> list[str]:
        """Forget incomplete streams idle past the timeout; return their ids."""
        return self.reassembler.expire(now_ms)


def decode_chunked(
    chunks: Iterable[bytes | bytearray | memoryview], expect: type[M] | None = None
) -> M:
    """Reassemble and decode one message from all its encoded chunks (any order)."""
    rx = Reassembler(timeout_ms=2**62)
    for data in chunks:
        done = rx.add_encoded(data, 0)
        if done is not None:
            cls = MESSAGE_TYPES.get(done.kind)
            if cls is None:
                raise UnknownMessageError(f"chunk of unknown message type {done.kind!r}")
            message: M = decode(done.payload, expect or cls)
            return message
    pending = rx.pending
    if not pending:
        raise ChunkError("no chunks given")
    raise ChunkError(f"stream {pending[0]!r} incomplete: missing seqs {rx.missing(pending[0])}")
