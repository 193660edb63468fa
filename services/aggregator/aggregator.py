"""The hospital aggregator: records in, partials and audit events out (bus port only)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from flbus.errors import BusError
from flbus.port import LogBus, LogSubscription, Record
from schemas import AuditEvent, Chunk, ModelVersion, RoundPlan, decode, encode
from schemas.chunking import ChunkedReceiver
from schemas.errors import SchemaError
from schemas.topics import (
    KAFKA_AUDIT,
    KAFKA_MODEL_VERSIONS,
    KAFKA_PARTIALS,
    KAFKA_ROUND_PLANS,
    updates_topic,
)
from services.aggregator.config import AggregatorConfig
from services.aggregator.consume import catch_up, header_claims, key_id
from services.aggregator.intake import GotFailure, GotUpdate, Undecodable, UpdateIntake
from services.aggregator.ledger import OffsetLedger
from services.aggregator.tally import Decision, RoundBook
from services.common.streams import publish_log_chunked


@dataclass(slots=True)
class AggregatorStats:
    """Counters since start: updates accepted, rejected by reason, devices dropped, partials."""

    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    partials: int = 0

    def as_dict(self) -> dict[str, object]:
        """Plain data for logs and status output."""
        return {
            "accepted": self.accepted,
            "rejected": dict(self.rejected),
            "dropped": self.dropped,
            "partials": self.partials,
        }


def partial_stream_id(model: str, round_id: int, hospital: str) -> str:
    """Stream id of a hospital's partial; also how a restart recognises its own partials."""
    return f"{model}/r{round_id}/{hospital}"


class Aggregator:
    """One hospital's aggregator; ``run`` until ``stop`` is set."""

    def __init__(self, config: AggregatorConfig, bus: LogBus, clock: Callable[[], int]) -> None:
        self.config = config
        self.book = RoundBook(config.hospital)
        self._bus, self._clock = bus, clock
        self._intake = UpdateIntake(config.stream_timeout_ms)
        self._versions = ChunkedReceiver(config.stream_timeout_ms)
        self._ledger = OffsetLedger()
        self._stats = AggregatorStats()
        self._updates: LogSubscription | None = None
        self._log = structlog.get_logger("aggregator").bind(hospital=config.hospital)

    def stats(self) -> AggregatorStats:
        """A snapshot of the counters."""
        s = self._stats
        return AggregatorStats(s.accepted, Counter(s.rejected), s.dropped, s.partials)

    async def run(self, stop: asyncio.Event) -> None:
        """Learn published rounds and plans, replay the backlog, then fold and tick until stop."""
        idle, tick_s = self.config.catch_up_idle_ms, self.config.tick_ms / 1000
        async with await self._bus.subscribe([KAFKA_PARTIALS]) as partials:
            await catch_up(partials, self._on_partial, idle)
        topic, group = updates_topic(self.config.hospital), self.config.consumer_group
        async with (
            await self._bus.subscribe([KAFKA_ROUND_PLANS, KAFKA_MODEL_VERSIONS]) as control,
            await self._bus.subscribe([topic], group=group, start="earliest") as updates,
        ):
            self._updates = updates
            await catch_up(control, self.on_control, idle)
            replayed = await catch_up(updates, self.on_update, idle)
            self._log.info("aggregator.started", replayed=replayed, closed=len(self.book.closed))
            while not stop.is_set():
                await self._drain(control)
                record = await updates.get(tick_s)
                if record is not None:
                    await self._drain(control)
                    await self.on_update(record)
                await self.tick()
            await self._commit()
        self._log.info("aggregator.stopped", **self._stats.as_dict())

    async def _drain(self, control: LogSubscription) -> None:
        while (record := await control.get(0)) is not None:
            await self.on_control(record)

    async def _on_partial(self, record: Record) -> None:
        try:
            sid = decode(record.value, Chunk).stream_id
        except SchemaError:
            return
        model, _, rest = sid.partition("/r")
        round_s, _, hospital = rest.partition("/")
        if hospital == self.config.hospital and round_s.isdigit():
            self.book.closed.add((model, int(round_s)))

    async def on_control(self, record: Record) -> None:
        """Handle one round plan or one model-version chunk."""
        now = self._clock()
        try:
            if record.topic == KAFKA_ROUND_PLANS:
                plan = decode(record.value, RoundPlan)
                before = self.book.open.get(plan.model)
                await self._publish(self.book.on_plan(plan, now))
                tally = self.book.open.get(plan.model)
                if tally is not None and tally is not before:
                    goal = tally.state.goal
                    self._log.info("round.opened", model=plan.model, round=plan.round_id, goal=goal)
                return
            version = self._versions.add(record.value, now)
            if isinstance(version, ModelVersion):
                self.book.on_manifest(version.model, version.version, version.tensors.manifest)
        except SchemaError as exc:
            self._log.warning("control.undecodable", topic=record.topic, error=repr(exc))

    async def on_update(self, record: Record) -> None:
        """Handle one record of the updates topic: fold, reject or count a dropped device."""
        now = self._clock()
        self._ledger.read(record)
        got = self._intake.feed(record, now)
        if isinstance(got, GotUpdate):
            await self._on_update(got, min(now, record.timestamp_ms or now))
        elif isinstance(got, GotFailure):
            await self._on_failure(got, record)
        elif isinstance(got, Undecodable):
            model, round_id = header_claims(record)
            await self._reject(model, round_id, key_id(record), got.reason, got.detail)

    async def _on_update(self, got: GotUpdate, sent_ms: int) -> None:
        u = got.update
        tally = self.book.open.get(u.model)
        if tally is not None and tally.plan.round_id == u.round_id:
            tally.hold(got.tp, got.first)
        found = self.book.check(u, now_ms=sent_ms, secret=self.config.token_secret)
        if found is not None:
            await self._reject(u.model, u.round_id, u.device_id, found.reason, found.detail)
            return
        self._stats.accepted += 1
        self._log.debug("update.accepted", model=u.model, round=u.round_id, device=u.device_id)
        decision = self.book.accept(u)
        await self._publish([decision] if decision is not None else [])

    async def _on_failure(self, got: GotFailure, record: Record) -> None:
        f = got.failure
        tally = self.book.open.get(f.model)
        if (
            tally is None
            or tally.plan.round_id != f.round_id
            or f.hospital_id != tally.state.hospital
        ):
            return await self._reject(f.model, f.round_id, f.device_id, "stray_failure", f.reason)
        tally.hold(record.tp, record.offset)
        tally.dropped += 1
        self._stats.dropped += 1
        self._log.info("device.dropped", model=f.model, round=f.round_id, device=f.device_id)
        await self._audit("device.dropped", f.model, f.round_id, f.device_id, f.reason, f.detail)

    async def _reject(
        self, model: str, round_id: int, device: str, reason: str, detail: str
    ) -> None:
        tally = self.book.open.get(model)
        if tally is not None and tally.plan.round_id == round_id:
            tally.rejected += 1
        self._stats.rejected[str(reason)] += 1
        self._log.warning(
            "update.rejected",
            model=model,
            round=round_id,
            device=device,
            reason=reason,
            detail=detail,
        )
        await self._audit("update.rejected", model, round_id, device, reason, detail)

    async def _audit(
        self, kind: str, model: str, round_id: int, device: str, reason: str, detail: str
    ) -> None:
        event = AuditEvent(
            kind, model, round_id, self.config.hospital, device, str(reason), detail, self._clock()
        )
        await self._bus.publish(KAFKA_AUDIT, encode(event), key=model.encode() or None)

    async def tick(self) -> None:
        """Expire stalled uploads and publish every round whose deadline passed."""
        now = self._clock()
        for sid in self._intake.expire(now):
            await self._reject("", -1, "", "incomplete_upload", f"stream {sid!r} stalled")
        await self._publish(self.book.tick(now))

    async def _publish(self, decisions: list[Decision]) -> None:
        for tally, decision in decisions:
            partial = tally.partial(self.config.hospital)
            sid = partial_stream_id(partial.model, partial.round_id, partial.hospital_id)
            headers = (("model", partial.model.encode()), ("round", str(partial.round_id).encode()))
            await publish_log_chunked(
                self._bus,
                KAFKA_PARTIALS,
                partial,
                stream_id=sid,
                key=partial.model.encode(),
                headers=(*headers, ("hospital", partial.hospital_id.encode())),
            )
            self.book.published(tally)
            self._stats.partials += 1
            self._log.info(
                "partial.published",
                model=partial.model,
                round=partial.round_id,
                reason=decision.reason,
                updates=partial.num_updates,
                examples=partial.num_examples,
                rejected=partial.rejected,
                dropped=tally.dropped,
                stats=self._stats.as_dict(),
            )
        if decisions:
            await self._commit()

    async def _commit(self) -> None:
        offsets = self._ledger.to_commit([*self.book.floors(), self._intake.floors()])
        if not offsets or self._updates is None:
            return
        try:
            await self._updates.commit(offsets)
        except BusError as exc:  # a later commit covers it; a replay double-counts nothing
            self._log.warning("offsets.commit_failed", error=repr(exc))
            return
        self._ledger.committed(offsets)
        self._log.debug(
            "offsets.committed", offsets={f"{t.topic}:{t.partition}": o for t, o in offsets.items()}
        )
