"""Audit event: a rejection or lifecycle fact, recorded as data (``update.rejected``, ...)."""

from __future__ import annotations

from dataclasses import dataclass

from schemas import limits as L
from schemas._base import check_types, ids, message, non_empty
from schemas.errors import ValidationError


@message(
    version=1,
    limits={
        "kind": L.CODE,
        "model": L.ID,
        "hospital_id": L.ID,
        "device_id": L.ID,
        "reason": L.CODE,
        "detail": L.DETAIL,
    },
)
@dataclass(frozen=True, slots=True)
class AuditEvent:
    """``kind`` is a dotted event name; empty ids / ``round_id`` -1 mean "not applicable"."""

    kind: str
    model: str
    round_id: int
    hospital_id: str
    device_id: str
    reason: str
    detail: str
    at_ms: int

    def __post_init__(self) -> None:
        check_types(self)
        non_empty(self, "kind", "reason")
        ids(self, "model", "hospital_id", "device_id", optional=True)
        if self.round_id < -1:
            raise ValidationError("round_id", "must be >= -1 (-1 = none)", "AuditEvent")
        if self.at_ms < 0:
            raise ValidationError("at_ms", f"must be >= 0, got {self.at_ms}", "AuditEvent")
