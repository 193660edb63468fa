"""The shell's hands: carry out handler outputs on the buses, count and log them."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import structlog

from flbus.errors import BusClosedError, BusError
from flbus.port import LogBus, PubSubBus
from schemas import encode
from schemas.topics import KAFKA_AUDIT
from services.selector.guards import Recent
from services.selector.outputs import Audit, Out, ToDevice, ToLog

_log = structlog.get_logger("selector")


class Publisher:
    """Publish outputs concurrently; a failed publish is counted and logged, not fatal."""

    def __init__(
        self, pubsub: PubSubBus, log_bus: LogBus, stats: Counter[str], remember: int = 100_000
    ) -> None:
        self.pubsub, self.log_bus, self.stats = pubsub, log_bus, stats
        self.audited = Recent(remember)  # keys of ``once`` audits already recorded

    async def carry_out(self, outs: Sequence[Out]) -> None:
        """Publish every output of one message."""
        results = await asyncio.gather(*(self._one(out) for out in outs), return_exceptions=True)
        for out, result in zip(outs, results, strict=True):
            if isinstance(result, BusError) and not isinstance(result, BusClosedError):
                self.stats["publish.failed"] += 1
                _log.error("publish.failed", output=type(out).__name__, error=str(result))
            elif isinstance(result, BaseException):
                raise result

    async def _one(self, out: Out) -> None:
        if isinstance(out, ToDevice):
            await self.pubsub.publish(out.topic, out.value, retain=out.retain)
            self.stats[out.what] += 1
        elif isinstance(out, ToLog):
            await self.log_bus.publish(out.topic, out.value, key=out.key, headers=out.headers)
            self.stats[out.what] += 1
        else:
            await self._audit(out)

    async def _audit(self, out: Audit) -> None:
        ev = out.event
        self.stats[ev.kind] += 1
        self.stats[f"{ev.kind}:{ev.reason}"] += 1
        if out.once and not self.audited.add(out.once):
            self.stats["audit.repeat_suppressed"] += 1
            return
        level = _log.info if ev.kind == "device.admitted" else _log.warning
        level(
            ev.kind,
            model=ev.model,
            round=ev.round_id,
            hospital=ev.hospital_id,
            device=ev.device_id,
            reason=ev.reason,
            detail=ev.detail,
        )
        await self.log_bus.publish(KAFKA_AUDIT, encode(ev), key=ev.model.encode() or None)
