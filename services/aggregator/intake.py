"""Turn records of ``fl.v1.updates.<H>`` into updates, failures, refusals or decode errors.

A record holds either one encoded ``Chunk`` of a ``ModelUpdate`` or one encoded
``TrainingFailure``; any other record is ``Poison`` (for the dead-letter topic).
Chunks are reassembled (one buffer per upload in flight); the offset of each
upload's first chunk is remembered until the upload completes, so offsets are
never committed past an upload still being received.

What uploads in flight may hold is bounded (:class:`StreamLimits`): bytes
one upload may claim, uploads open per device (the record key) and per
process, bytes held in all, and an upload's age. An upload over a limit is
refused once, on its first chunk; its later chunks are dropped and counted.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from flbus.port import Record, TopicPartition
from schemas import Chunk, ModelUpdate, TrainingFailure, decode
from schemas.chunking import Reassembler
from schemas.codec import MESSAGE_TYPES
from schemas.dead_letter import UNEXPECTED_TYPE
from schemas.errors import SchemaError
from services.common.dead_letters import describe, reason_for


@dataclass(frozen=True, slots=True)
class GotUpdate:
    """A whole update; ``first`` is the record offset of its first chunk."""

    update: ModelUpdate
    tp: TopicPartition
    first: int


@dataclass(frozen=True, slots=True)
class GotFailure:
    """A device reported that it could not train."""

    failure: TrainingFailure


@dataclass(frozen=True, slots=True)
class Undecodable:
    """The record (or the upload it completes) cannot be read; ``reason`` is the error class."""

    reason: str
    detail: str
    stream_id: str = ""


@dataclass(frozen=True, slots=True)
class Poison:
    """The record itself is unusable (not a message, or not one this topic carries)."""

    reason: str  # a dead-letter reason code (schemas.dead_letter.REASONS)
    detail: str


@dataclass(frozen=True, slots=True)
class Refused:
    """An upload over a limit of :class:`StreamLimits`; nothing of it is held."""

    reason: str
    detail: str
    stream_id: str


Intake = GotUpdate | GotFailure | Undecodable | Poison | Refused | None


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """What uploads in flight may hold (see :mod:`services.aggregator.config`)."""

    idle_ms: int  # an upload with no new chunk this long is dropped
    max_age_ms: int  # an upload still incomplete this long after its first chunk is dropped
    max_upload_bytes: int  # bytes one upload may claim
    max_open: int  # uploads in flight in this process
    max_open_per_device: int  # uploads in flight per device (record key)
    max_held_bytes: int  # bytes all uploads in flight may claim together


@dataclass(frozen=True, slots=True)
class _Upload:
    tp: TopicPartition
    first: int
    device: str
    opened_ms: int
    claimed: int


class UpdateIntake:
    """Reassemble update uploads record by record (no clock: time is passed in)."""

    def __init__(self, limits: StreamLimits, remember: int = 4096) -> None:
        self.limits = limits
        self._rx = Reassembler(limits.idle_ms, max_payload_bytes=limits.max_upload_bytes)
        self._open: dict[str, _Upload] = {}
        self._refused: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self.dropped_chunks = 0  # chunks of refused uploads, not reported again

    @property
    def open_uploads(self) -> int:
        """Uploads in flight."""
        return len(self._open)

    @property
    def held_bytes(self) -> int:
        """Bytes the uploads in flight claim (their buffers' size)."""
        return sum(u.claimed for u in self._open.values())

    def feed(self, record: Record, now_ms: int) -> Intake:
        """Take one record; return what it completes (None while an upload is partial)."""
        try:
            msg: object = decode(record.value)
        except SchemaError as exc:
            return Poison(reason_for(exc), describe(exc))
        if isinstance(msg, TrainingFailure):
            return GotFailure(msg)
        if not isinstance(msg, Chunk):
            return Poison(UNEXPECTED_TYPE, f"{type(msg).__name__} on an updates topic")
        return self._chunk(msg, record, now_ms)

    def _chunk(self, chunk: Chunk, record: Record, now_ms: int) -> Intake:
        sid = chunk.stream_id
        if sid in self._refused:
            self.dropped_chunks += 1
            return None
        upload = self._open.get(sid)
        if upload is None:
            device = record.key.decode("utf-8", "replace") if record.key else ""
            refusal = self._over_limit(sid, device, chunk.total_bytes)
            if refusal is not None:
                self._refused[sid] = None
                while len(self._refused) > self._remember:
                    self._refused.popitem(last=False)
                return refusal
            upload = _Upload(record.tp, record.offset, device, now_ms, chunk.total_bytes)
        try:
            payload = self._rx.add(chunk, now_ms)
        except SchemaError as exc:
            self._forget_if_gone(sid)
            return Undecodable(type(exc).__name__, str(exc), sid)
        if payload is None:
            if sid in self._rx.pending:
                self._open.setdefault(sid, upload)
            return None
        self._open.pop(sid, None)
        if chunk.kind != ModelUpdate.__name__:
            return Undecodable("UnexpectedMessage", f"{chunk.kind} on an updates topic", sid)
        try:
            update = decode(payload, MESSAGE_TYPES[chunk.kind])
        except SchemaError as exc:
            return Undecodable(type(exc).__name__, str(exc), sid)
        return GotUpdate(update, upload.tp, upload.first)

    def _over_limit(self, sid: str, device: str, claimed: int) -> Refused | None:
        lim = self.limits
        if claimed > lim.max_upload_bytes:
            why = f"claims {claimed} bytes, at most {lim.max_upload_bytes}"
            return Refused("upload_too_large", why, sid)
        if len(self._open) >= lim.max_open:
            return Refused("too_many_uploads", f"{len(self._open)} uploads in flight", sid)
        mine = sum(1 for u in self._open.values() if u.device == device)
        if mine >= lim.max_open_per_device:
            why = f"device {device!r} has {mine} uploads in flight"
            return Refused("too_many_device_uploads", why, sid)
        held = self.held_bytes
        if held + claimed > lim.max_held_bytes:
            why = f"{held} bytes held, {claimed} more would pass {lim.max_held_bytes}"
            return Refused("uploads_memory_full", why, sid)
        return None

    def _forget_if_gone(self, sid: str) -> None:
        if sid in self._open and sid not in self._rx.pending:
            del self._open[sid]

    def expire(self, now_ms: int) -> list[tuple[str, str]]:
        """Drop uploads idle past the timeout or older than the age limit: (id, why) each."""
        stalled = self._rx.expire(now_ms)
        gone = [(sid, "stalled") for sid in stalled]
        for sid, up in self._open.items():
            if now_ms - up.opened_ms >= self.limits.max_age_ms and sid not in stalled:
                self._rx.drop(sid)
                gone.append((sid, f"still incomplete after {self.limits.max_age_ms} ms"))
        for sid, _ in gone:
            self._open.pop(sid, None)
        return gone

    def floors(self) -> dict[TopicPartition, int]:
        """Per partition, the lowest first-chunk offset of an upload still in flight."""
        out: dict[TopicPartition, int] = {}
        for up in self._open.values():
            out[up.tp] = min(up.first, out.get(up.tp, up.first))
        return out
