"""Dead letter: a Kafka record a service consumer skipped because it could not use it.

Written to ``fl.v1.dead-letters`` by the consumer that met the record (see
``services.common.dead_letters``), read by ``flctl dlq``. Business rejections of
well-formed messages (a bad token, a closed round) are ``AuditEvent``s, not
dead letters.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import limits as L
from schemas._base import check_types, ids, message, non_empty, non_negative
from schemas.errors import ValidationError

# Why a record was skipped; also the counters' names in the roles' stats.
UNDECODABLE = "undecodable"  # not one of our Arrow messages at all (DecodeError)
UNSUPPORTED_VERSION = "unsupported_version"  # a schema version we do not read
UNEXPECTED_TYPE = "unexpected_type"  # a message type this topic does not carry
INVALID = "invalid"  # decoded, but a field is missing, mistyped or out of range
BAD_CHUNK = "bad_chunk"  # a chunk that cannot join or complete its stream
HANDLER_ERROR = "handler_error"  # decoded, but the handler raised on it
REASONS = (UNDECODABLE, UNSUPPORTED_VERSION, UNEXPECTED_TYPE, INVALID, BAD_CHUNK, HANDLER_ERROR)

ORIGINAL_MAX_BYTES = 16 * 1024
"""At most this many bytes of the original value travel in a dead letter."""

KEY_MAX_BYTES = 256
DETAIL_MAX_CHARS = 1000


@message(
    version=1,
    limits={
        "origin_topic": L.Bound(max_bytes=249),  # Kafka's longest topic name
        "origin_key": L.Bound(max_bytes=KEY_MAX_BYTES),
        "role": L.ID,
        "hospital_id": L.ID,
        "reason": L.CODE,
        "detail": L.Bound(max_bytes=DETAIL_MAX_CHARS * 4),  # up to 4 UTF-8 bytes a character
        "original": L.Bound(max_bytes=ORIGINAL_MAX_BYTES),
    },
)
@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Where the record was (topic, partition, offset, key, timestamp), who skipped it and why.

    ``original`` is the record's value cut to at most ``ORIGINAL_MAX_BYTES``;
    ``original_size`` is the size it had. ``hospital_id`` is "" for roles that
    serve every hospital.
    """

    origin_topic: str
    origin_partition: int
    origin_offset: int
    origin_key: bytes
    origin_timestamp_ms: int
    role: str
    hospital_id: str
    reason: str
    detail: str
    original_size: int
    original: bytes
    at_ms: int

    def __post_init__(self) -> None:
        check_types(self)  # also the byte limits of topic, key, detail and original
        non_empty(self, "origin_topic", "role")
        ids(self, "role", "reason")  # reason: one of REASONS from this code; newer writers may add
        ids(self, "hospital_id", optional=True)
        non_negative(self, "origin_partition", "origin_timestamp_ms", "original_size", "at_ms")
        if self.origin_offset < -1:
            raise ValidationError("origin_offset", "must be >= -1 (-1 = unknown)", "DeadLetter")
        if len(self.detail) > DETAIL_MAX_CHARS:
            raise ValidationError("detail", f"over {DETAIL_MAX_CHARS} characters", "DeadLetter")
