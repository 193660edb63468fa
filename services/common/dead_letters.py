"""Poison records: skip, count, log and write them to ``fl.v1.dead-letters``, never die.

Every service consumer hands a record it cannot use (it does not decode, it is
a message type the topic does not carry, or its handler raised) to
:meth:`DeadLetters.send` and goes on with the next record; where the consumer
commits offsets, it commits past the record as usual. Business rejections of
well-formed messages stay ``AuditEvent``s on ``fl.v1.audit``.

Bounded: a dead letter carries at most ``max_bytes`` of the original value,
and each consumer writes at most ``burst`` dead letters at once, refilled at
``per_second`` (a token bucket on the injected clock). Past that, records are
still skipped, counted (``suppressed`` too) and logged at debug level, so a
flood of garbage cannot make a service write (or warn) without bound.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

import structlog

from flbus.errors import BusError
from flbus.port import LogBus, Record
from schemas import DeadLetter, encode
from schemas.dead_letter import (
    BAD_CHUNK,
    DETAIL_MAX_CHARS,
    HANDLER_ERROR,
    INVALID,
    KEY_MAX_BYTES,
    ORIGINAL_MAX_BYTES,
    REASONS,
    UNDECODABLE,
    UNEXPECTED_TYPE,
    UNSUPPORTED_VERSION,
)
from schemas.errors import (
    ChunkError,
    DecodeError,
    SchemaError,
    SchemaVersionError,
    UnknownMessageError,
    ValidationError,
)
from schemas.topics import KAFKA_DEAD_LETTERS

SUPPRESSED = "suppressed"  # counter: skipped and counted, but not written (over the rate)

_log = structlog.get_logger("dead_letters")


# Most specific first: the first class an exception is an instance of names its reason.
_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (DecodeError, UNDECODABLE),
    (SchemaVersionError, UNSUPPORTED_VERSION),
    (UnknownMessageError, UNEXPECTED_TYPE),
    (ValidationError, INVALID),
    (ChunkError, BAD_CHUNK),
    (SchemaError, UNDECODABLE),
)


def reason_for(exc: BaseException) -> str:
    """The dead-letter reason code of an exception met while handling a record."""
    return next((reason for cls, reason in _REASONS if isinstance(exc, cls)), HANDLER_ERROR)


def describe(exc: BaseException) -> str:
    """``Class: message`` of an exception, cut to what a dead letter carries."""
    return f"{type(exc).__name__}: {exc}"[:DETAIL_MAX_CHARS]


class _Bucket:
    """A token bucket on a millisecond clock (time passed in)."""

    def __init__(self, burst: int, per_second: float, now_ms: int) -> None:
        self.burst, self.per_ms = burst, per_second / 1000
        self.tokens, self.at_ms = float(burst), now_ms

    def take(self, now_ms: int) -> bool:
        elapsed = max(0, now_ms - self.at_ms)
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.per_ms)
        self.at_ms = max(self.at_ms, now_ms)
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class DeadLetters:
    """One consumer's dead-letter writer: counts per reason, one log event, bounded writes."""

    def __init__(
        self,
        bus: LogBus,
        role: str,
        clock: Callable[[], int],
        *,
        hospital: str = "",
        counts: Counter[str] | None = None,
        prefix: str = "",
        max_bytes: int = ORIGINAL_MAX_BYTES,
        burst: int = 100,
        per_second: float = 10.0,
    ) -> None:
        """Write for ``role`` (and ``hospital``) on ``bus``.

        Parameters
        ----------
        counts, prefix:
            The role's counters: each skipped record adds 1 to ``prefix + reason``
            (and ``prefix + "suppressed"`` when it was not written).
        max_bytes:
            How much of the original value a dead letter carries (at most 16 KiB).
        burst, per_second:
            The write budget: ``burst`` at once, refilled at ``per_second``.
        """
        self._bus, self._clock = bus, clock
        self.role, self.hospital = role, hospital
        self.counts: Counter[str] = counts if counts is not None else Counter()
        self._prefix = prefix
        self._max_bytes = min(max_bytes, ORIGINAL_MAX_BYTES)
        self._bucket = _Bucket(burst, per_second, clock())
        self._suppressed_since_write = 0

    async def send(self, record: Record, reason: str, detail: str) -> bool:
        """Count and log ``record`` as skipped for ``reason``; write it if the budget allows.

        Returns whether a dead letter was written. Never raises for a bus that
        refuses the write (it is logged); the caller goes on either way.
        """
        if reason not in REASONS:
            raise ValueError(f"unknown dead-letter reason {reason!r}")
        detail = detail[:DETAIL_MAX_CHARS]
        self.counts[self._prefix + reason] += 1
        where = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "reason": reason,
            "detail": detail,
            "role": self.role,
        }
        now = self._clock()
        if not self._bucket.take(now):
            self.counts[self._prefix + SUPPRESSED] += 1
            self._suppressed_since_write += 1
            _log.debug("record.dead_lettered", written=False, **where)
            return False
        letter = DeadLetter(
            origin_topic=record.topic,
            origin_partition=max(record.partition, 0),
            origin_offset=max(record.offset, -1),
            origin_key=(record.key or b"")[:KEY_MAX_BYTES],
            origin_timestamp_ms=max(record.timestamp_ms, 0),
            role=self.role,
            hospital_id=self.hospital,
            reason=reason,
            detail=detail,
            original_size=len(record.value),
            original=bytes(record.value[: self._max_bytes]),
            at_ms=max(now, 0),
        )
        suppressed, self._suppressed_since_write = self._suppressed_since_write, 0
        _log.warning("record.dead_lettered", written=True, suppressed_before=suppressed, **where)
        try:
            await self._bus.publish(KAFKA_DEAD_LETTERS, encode(letter), key=record.topic.encode())
        except BusError as exc:  # the record is still skipped: one record never stops us
            _log.warning("dead_letter.write_failed", error=repr(exc), **where)
            return False
        return True

    async def guard(self, record: Record, handle: Callable[[Record], Awaitable[None]]) -> bool:
        """Run ``handle(record)``; on any error but a bus failure, dead-letter the record.

        Returns True when the handler finished, False when the record was
        dead-lettered. A BusError propagates: a broker that fails stops the
        role (exit 1), it is not the record's fault.
        """
        try:
            await handle(record)
        except BusError:
            raise
        except Exception as exc:  # a poison record must not stop the consumer
            await self.send(record, reason_for(exc), describe(exc))
            return False
        return True
