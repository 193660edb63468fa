"""The coordinator service: round lifecycles of every model, on the service plane.

It reads partial aggregates, admissions (audit events) and check-ins from
Kafka, drives one :class:`ModelRounds` per model, and publishes plans, model
versions and artifacts. Handlers know nothing of aiokafka: they see a LogBus.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import structlog

from flbus.errors import BusError
from flbus.port import LogBus, LogSubscription, Record
from schemas import (
    ArtifactBundle,
    AuditEvent,
    CheckIn,
    ModelVersion,
    PartialAggregate,
    RoundPlan,
    decode,
    encode,
    topics,
)
from schemas.chunking import ChunkedReceiver
from schemas.errors import SchemaError, UnknownMessageError
from services.common.dead_letters import DeadLetters, describe, reason_for
from services.common.streams import publish_log_chunked
from services.coordinator.model_rounds import ModelRounds

log = structlog.get_logger("coordinator")

TOPICS_READ = (topics.KAFKA_PARTIALS, topics.KAFKA_AUDIT, topics.KAFKA_CHECKINS)


class KafkaOutbox:
    """The coordinator's decisions as records on the service plane."""

    def __init__(self, bus: LogBus, clock: Callable[[], int]) -> None:
        self.bus = bus
        self.clock = clock

    async def plan(self, plan: RoundPlan) -> None:
        """Publish a plan, keyed by model (the topic is compacted: latest wins)."""
        await self.bus.publish(topics.KAFKA_ROUND_PLANS, encode(plan), key=plan.model.encode())

    async def version(self, version: ModelVersion) -> None:
        """Publish a model version in chunks."""
        await publish_log_chunked(
            self.bus,
            topics.KAFKA_MODEL_VERSIONS,
            version,
            stream_id=f"{version.model}/v{version.version}",
            key=version.model.encode(),
        )

    async def artifacts(self, bundle: ArtifactBundle) -> None:
        """Publish a model's training artifacts in chunks."""
        await publish_log_chunked(
            self.bus,
            topics.KAFKA_ARTIFACTS,
            bundle,
            stream_id=f"{bundle.model}/artifacts/{bundle.digest[:16]}",
            key=bundle.model.encode(),
        )

    async def audit(self, kind: str, model: str, round_id: int, reason: str, detail: str) -> None:
        """Record a round event on the audit topic."""
        event = AuditEvent(kind, model, round_id, "", "", reason, detail, self.clock())
        await self.bus.publish(topics.KAFKA_AUDIT, encode(event), key=model.encode())


class Coordinator:
    """Runs every model's rounds until stopped or until all have run their rounds."""

    def __init__(
        self,
        bus: LogBus,
        models: dict[str, ModelRounds],
        outbox: KafkaOutbox,
        bundles: dict[str, ArtifactBundle],
        clock: Callable[[], int],
        tick_ms: int = 50,
    ) -> None:
        self.bus = bus
        self.models = models
        self.outbox = outbox
        self.bundles = bundles
        self.clock = clock
        self.tick_ms = tick_ms
        self.finished = asyncio.Event()
        self.errors: Counter[str] = Counter()  # records dead-lettered, by reason
        self._dead = DeadLetters(bus, "coordinator", clock, counts=self.errors)
        self._partials = ChunkedReceiver()

    async def start(self) -> LogSubscription:
        """Create topics, resume round numbering, announce artifacts and current versions."""
        for name in (
            topics.KAFKA_PARTIALS,
            topics.KAFKA_AUDIT,
            topics.KAFKA_CHECKINS,
            topics.KAFKA_MODEL_VERSIONS,
            topics.KAFKA_ARTIFACTS,
            topics.KAFKA_EVALUATIONS,
        ):
            await self.bus.create_topic(name)
        await self.bus.create_topic(topics.KAFKA_ROUND_PLANS, compacted=True)
        await self._resume_round_ids()
        sub = await self.bus.subscribe(list(TOPICS_READ), start="earliest")
        for tp, end in (await sub.end_offsets()).items():
            await sub.seek(tp, end)  # only what happens from now on
        for name, rounds in self.models.items():
            await self.outbox.artifacts(self.bundles[name])
            record = rounds.store.latest(name)
            assert record is not None
            await self.outbox.version(rounds.version_message(record))
        return sub

    async def _resume_round_ids(self) -> None:
        """Continue round numbering after the last plan on the compacted plans topic."""
        sub = await self.bus.subscribe([topics.KAFKA_ROUND_PLANS], start="earliest")
        try:
            ends = await sub.end_offsets()
            remaining = sum(ends.values())
            while remaining > 0:
                record = await sub.get(5.0)
                if record is None:
                    break
                remaining -= 1
                try:
                    plan = decode(record.value, RoundPlan)
                except SchemaError as exc:  # compacted and reread at every start: skip it
                    await self._dead.send(record, reason_for(exc), describe(exc))
                    continue
                if plan.model in self.models:
                    m = self.models[plan.model]
                    m.next_round_id = max(m.next_round_id, plan.round_id + 1)
        finally:
            await sub.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set or every model has run its rounds."""
        sub = await self.start()
        try:
            while not stop.is_set() and not self.finished.is_set():
                record = await sub.get(self.tick_ms / 1000)
                now = self.clock()
                if record is not None:
                    await self.handle(record, now)
                for rounds in self.models.values():
                    await rounds.on_tick(now)
                if all(m.finished for m in self.models.values()):
                    self.finished.set()
        finally:
            await sub.close()
            for rounds in self.models.values():
                await rounds.settle()  # a version being stored is finished, not torn
            log.info("coordinator.stopped", dead_lettered=dict(self.errors))

    async def handle(self, record: Record, now_ms: int) -> None:
        """Dispatch one record; one it cannot use is dead-lettered and counted, never fatal."""
        try:
            if record.topic == topics.KAFKA_PARTIALS:
                partial = self._partials.add(record.value, now_ms)
                if partial is not None and not isinstance(partial, PartialAggregate):
                    raise UnknownMessageError(f"{type(partial).__name__} on the partials topic")
                if isinstance(partial, PartialAggregate) and partial.model in self.models:
                    await self.models[partial.model].on_partial(partial, now_ms)
            elif record.topic == topics.KAFKA_AUDIT:
                event = decode(record.value, AuditEvent)
                if event.kind == "device.admitted" and event.model in self.models:
                    await self.models[event.model].on_admitted(
                        event.round_id, event.hospital_id, event.device_id, now_ms
                    )
            elif record.topic == topics.KAFKA_CHECKINS:
                checkin = decode(record.value, CheckIn)
                for model in checkin.models:
                    if model in self.models:
                        self.models[model].note_checkin(checkin.hospital_id, checkin.device_id)
        except BusError:
            raise  # the broker failed, not the record: the role stops (exit 1)
        except Exception as e:  # a poison record must not stop the coordinator
            await self._dead.send(record, reason_for(e), describe(e))
