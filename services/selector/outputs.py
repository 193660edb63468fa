"""What the selector's handlers decide to publish: plain data the shell carries out."""

from __future__ import annotations

from dataclasses import dataclass

from flbus.port import Headers
from schemas import AuditEvent
from schemas._base import is_valid_id
from schemas.topics import DeviceTopic

MAX_DETAIL = 300


@dataclass(frozen=True, slots=True)
class ToDevice:
    """Publish ``value`` on the device plane (QoS 1); ``what`` names it for the counters."""

    topic: str
    value: bytes
    what: str
    retain: bool = False


@dataclass(frozen=True, slots=True)
class ToLog:
    """Append ``value`` to a service-plane topic; ``what`` names it for the counters."""

    topic: str
    value: bytes
    key: bytes | None
    what: str
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Audit:
    """Record ``event`` on ``fl.v1.audit`` and log it under its kind.

    With ``once`` set, only the first audit with that key is recorded and logged;
    repeats (every other chunk of a refused upload stream, say) are only counted.
    """

    event: AuditEvent
    once: tuple[object, ...] = ()


Out = ToDevice | ToLog | Audit


def safe_id(value: object) -> str:
    """``value`` if it is a valid id, else "" (audit events never fail on bad input)."""
    return value if isinstance(value, str) and is_valid_id(value) else ""


def audit(
    kind: str,
    reason: str,
    detail: str,
    now_ms: int,
    *,
    model: object = "",
    round_id: int = -1,
    where: DeviceTopic | None = None,
    hospital: str = "",
    device: str = "",
    once: tuple[object, ...] = (),
) -> Audit:
    """An Audit output whose ids are kept only when valid and whose detail is bounded."""
    if where is not None:
        hospital, device = where.hospital, where.device
    return Audit(
        AuditEvent(
            kind=kind,
            model=safe_id(model),
            round_id=max(-1, round_id),
            hospital_id=safe_id(hospital),
            device_id=safe_id(device),
            reason=reason,
            detail=detail[:MAX_DETAIL],
            at_ms=max(0, now_ms),
        ),
        once,
    )
