"""Device check-in: a device says it is available to train (device -> selector)."""

from __future__ import annotations

from dataclasses import dataclass

from schemas import limits as L
from schemas._base import check_types, finite, ids, in_range, message, non_empty, non_negative


@message(
    version=1,
    limits={
        "device_id": L.ID,
        "hospital_id": L.ID,
        "models": L.Bound(max_items=L.MAX_MODELS_PER_CHECKIN, max_bytes=L.ID_BYTES),
        "runtime_version": L.CODE,
        "sdk_version": L.CODE,
    },
)
@dataclass(frozen=True, slots=True)
class CheckIn:
    """Availability facts a device reports when it is eligible to train."""

    device_id: str
    hospital_id: str
    models: tuple[str, ...]
    runtime_version: str
    sdk_version: str
    charging: bool
    unmetered: bool
    idle: bool
    battery_pct: float
    free_memory_mb: int
    sent_at_ms: int

    def __post_init__(self) -> None:
        check_types(self)
        ids(self, "device_id", "hospital_id", "models")
        non_empty(self, "runtime_version", "sdk_version")
        finite(self, "battery_pct")
        in_range(self, "battery_pct", 0.0, 100.0)
        non_negative(self, "free_memory_mb", "sent_at_ms")
