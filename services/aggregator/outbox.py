"""What the aggregator writes: partials on ``fl.v1.partials.{hospital}``, audit events."""

from __future__ import annotations

from collections.abc import Callable

from flbus.port import LogBus, Record
from schemas import AuditEvent, Chunk, PartialAggregate, decode, encode
from schemas.errors import SchemaError
from schemas.limits import fit_text
from schemas.topics import KAFKA_AUDIT, partials_topic
from services.common.streams import publish_log_chunked


def partial_stream_id(model: str, round_id: int, hospital: str) -> str:
    """Stream id of a hospital's partial; also how a restart recognises its own partials."""
    return f"{model}/r{round_id}/{hospital}"


def published_round(record: Record, hospital: str) -> tuple[str, int] | None:
    """(model, round) if ``record`` is a chunk of ``hospital``'s partial, else None."""
    try:
        sid = decode(record.value, Chunk).stream_id
    except SchemaError:
        return None
    model, _, rest = sid.partition("/r")
    round_s, _, owner = rest.partition("/")
    return (model, int(round_s)) if owner == hospital and round_s.isdigit() else None


class Outbox:
    """Publishes one hospital's partials and audit events on a LogBus."""

    def __init__(self, bus: LogBus, hospital: str, clock: Callable[[], int]) -> None:
        self._bus, self._hospital, self._clock = bus, hospital, clock

    async def partial(self, partial: PartialAggregate) -> None:
        """Publish a partial as chunks keyed by model; returns once every chunk is stored."""
        sid = partial_stream_id(partial.model, partial.round_id, partial.hospital_id)
        headers = (
            ("model", partial.model.encode()),
            ("round", str(partial.round_id).encode()),
            ("hospital", partial.hospital_id.encode()),
        )
        key = partial.model.encode()
        await publish_log_chunked(
            self._bus,
            partials_topic(self._hospital),
            partial,
            stream_id=sid,
            key=key,
            headers=headers,
        )

    async def audit(
        self, kind: str, model: str, round_id: int, device: str, reason: str, detail: str
    ) -> None:
        """Publish one AuditEvent about this hospital (key = model)."""
        event = AuditEvent(
            kind,
            model,
            round_id,
            self._hospital,
            device,
            str(reason),
            fit_text(detail),
            self._clock(),
        )
        await self._bus.publish(KAFKA_AUDIT, encode(event), key=model.encode() or None)
