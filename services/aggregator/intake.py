"""Turn records of ``fl.v1.updates.<H>`` into updates, failures or decode errors.

A record holds either one encoded ``Chunk`` of a ``ModelUpdate`` or one encoded
``TrainingFailure``; any other record is ``Poison`` (for the dead-letter topic).
Chunks are reassembled (one buffer per upload in flight); the offset of each
upload's first chunk is remembered until the upload completes, so offsets are
never committed past an upload still being received.
"""

from __future__ import annotations

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


Intake = GotUpdate | GotFailure | Undecodable | Poison | None


class UpdateIntake:
    """Reassemble update uploads record by record (no clock: time is passed in)."""

    def __init__(self, timeout_ms: int) -> None:
        self._rx = Reassembler(timeout_ms)
        self._first: dict[str, tuple[TopicPartition, int]] = {}

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
        first = self._first.get(sid, (record.tp, record.offset))
        try:
            payload = self._rx.add(chunk, now_ms)
        except SchemaError as exc:
            self._forget_if_gone(sid)
            return Undecodable(type(exc).__name__, str(exc), sid)
        if payload is None:
            if sid in self._rx.pending:
                self._first.setdefault(sid, first)
            return None
        self._first.pop(sid, None)
        if chunk.kind != ModelUpdate.__name__:
            return Undecodable("UnexpectedMessage", f"{chunk.kind} on an updates topic", sid)
        try:
            update = decode(payload, MESSAGE_TYPES[chunk.kind])
        except SchemaError as exc:
            return Undecodable(type(exc).__name__, str(exc), sid)
        return GotUpdate(update, first[0], first[1])

    def _forget_if_gone(self, sid: str) -> None:
        if sid in self._first and sid not in self._rx.pending:
            del self._first[sid]

    def expire(self, now_ms: int) -> list[str]:
        """Drop uploads idle past the timeout; return their stream ids."""
        gone = self._rx.expire(now_ms)
        for sid in gone:
            self._first.pop(sid, None)
        return gone

    def floors(self) -> dict[TopicPartition, int]:
        """Per partition, the lowest first-chunk offset of an upload still in flight."""
        out: dict[TopicPartition, int] = {}
        for tp, offset in self._first.values():
            out[tp] = min(offset, out.get(tp, offset))
        return out
