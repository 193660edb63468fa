"""The coordinator service: round lifecycles of every model, on the service plane.

It reads partial aggregates (one topic per hospital, ``fl.v1.partials.{hospital}``;
a partial naming another hospital than its topic's is dead-lettered as invalid),
admissions (audit events) and check-ins from Kafka, drives one :class:`ModelRounds`
per model, and publishes plans, model
versions and artifacts. Handlers know nothing of aiokafka: they see a LogBus.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence

import structlog

from flbus.errors import BusError
from flbus.port import LogBus, LogSubscription, Record, TopicPartition
from flcore.round_types import Phase
from flcore.signing import Signer
from flproc.health import ConsumerLag
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
from schemas.errors import SchemaError, UnknownMessageError, ValidationError
from schemas.limits import CODE_BYTES, fit_text
from services.common.dead_letters import DeadLetters, describe, reason_for
from services.common.streams import publish_log_chunked
from services.coordinator.model_rounds import ModelRounds
from services.coordinator.position import ReadPosition, catch_up

log = structlog.get_logger("coordinator")


def topics_read(hospitals: Sequence[str]) -> tuple[str, ...]:
    """The topics the coordinator consumes: each hospital's partials, audit and check-ins."""
    return (*map(topics.partials_topic, hospitals), topics.KAFKA_AUDIT, topics.KAFKA_CHECKINS)


GROUP = "coordinator"
"""The consumer group of the topics read: a restart resumes from its committed position."""
OPEN_PHASES = (Phase.SELECTING, Phase.TRAINING, Phase.CLOSING)
STALL_S = 20.0
"""Health: records waiting on the topics read and none handled for this long means stalled."""


class KafkaOutbox:
    """The coordinator's decisions as records on the service plane.

    Every plan, model version and artifact bundle leaves signed by ``signer``
    (devices adopt nothing else, docs/security.md).
    """

    def __init__(self, bus: LogBus, clock: Callable[[], int], signer: Signer) -> None:
        self.bus = bus
        self.clock = clock
        self.signer = signer

    async def plan(self, plan: RoundPlan) -> None:
        """Publish a plan, keyed by model (the topic is compacted: latest wins)."""
        plan = self.signer.sign(plan)
        await self.bus.publish(topics.KAFKA_ROUND_PLANS, encode(plan), key=plan.model.encode())

    async def version(self, version: ModelVersion) -> None:
        """Publish a model version in chunks."""
        version = self.signer.sign(version)
        await publish_log_chunked(
            self.bus,
            topics.KAFKA_MODEL_VERSIONS,
            version,
            stream_id=f"{version.model}/v{version.version}",
            key=version.model.encode(),
        )

    async def artifacts(self, bundle: ArtifactBundle) -> None:
        """Publish a model's training artifacts in chunks."""
        bundle = self.signer.sign(bundle)
        await publish_log_chunked(
            self.bus,
            topics.KAFKA_ARTIFACTS,
            bundle,
            stream_id=f"{bundle.model}/artifacts/{bundle.digest[:16]}",
            key=bundle.model.encode(),
        )

    async def audit(self, kind: str, model: str, round_id: int, reason: str, detail: str) -> None:
        """Record a round event on the audit topic.

        A reason longer than a code (an abandonment listing every refused
        partial) keeps its head as the code and goes whole into the detail:
        a failed audit would otherwise abort the round's bookkeeping.
        """
        code = fit_text(reason, CODE_BYTES)
        if code != reason:
            detail = f"{reason}; {detail}" if detail else reason
        event = AuditEvent(kind, model, round_id, "", "", code, fit_text(detail), self.clock())
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
        catch_up_idle_ms: int = 2_000,
        health: ConsumerLag | None = None,
    ) -> None:
        self.bus = bus
        self.models = models
        # Whose partials to read: every hospital some model federates.
        self.hospitals = tuple(dict.fromkeys(h for m in models.values() for h in m.hospitals))
        self.outbox = outbox
        self.bundles = bundles
        self.clock = clock
        self.tick_ms = tick_ms
        self.finished = asyncio.Event()
        self.errors: Counter[str] = Counter()  # records dead-lettered, by reason
        self._dead = DeadLetters(bus, "coordinator", clock, counts=self.errors)
        # One reassembler per hospital's topic: a stream id forged on one topic cannot
        # shadow the same id on its rightful hospital's topic.
        self._partials = {topics.partials_topic(h): ChunkedReceiver() for h in self.hospitals}
        self.catch_up_idle_ms = catch_up_idle_ms
        self.position = ReadPosition()
        self._held: dict[str, int] = {}  # model -> the open round holding the read position
        self._sub: LogSubscription | None = None
        self.health = health or ConsumerLag("partials, admissions and check-ins", STALL_S)

    def problem(self) -> str | None:
        """Health: records wait and none was handled for a while, or Kafka does not answer."""
        return self.health.problem()

    async def start(self) -> LogSubscription:
        """Create topics, take up open rounds, announce artifacts and current versions."""
        for name in (
            *topics_read(self.hospitals),
            topics.KAFKA_MODEL_VERSIONS,
            topics.KAFKA_ARTIFACTS,
            topics.KAFKA_EVALUATIONS,
        ):
            await self.bus.create_topic(name)
        await self.bus.create_topic(topics.KAFKA_ROUND_PLANS, compacted=True)
        await self._resume_rounds()
        # From the group's committed position; with none (first start), from now on.
        sub = await self.bus.subscribe(
            list(topics_read(self.hospitals)), group=GROUP, start="latest"
        )
        self._sub = sub
        self._hold_open_rounds()
        for name, rounds in self.models.items():
            await self.outbox.artifacts(self.bundles[name])
            record = rounds.store.latest(name)
            assert record is not None
            await self.outbox.version(rounds.version_message(record))
        return sub

    async def _resume_rounds(self) -> None:
        """Continue after the last plan of each model on the compacted plans topic.

        Numbering goes on after it, and a round it shows open is taken up again.
        """
        last: dict[str, RoundPlan] = {}
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
                    known = last.get(plan.model)
                    if known is None or plan.round_id >= known.round_id:
                        last[plan.model] = plan
        finally:
            await sub.close()
        for model, plan in last.items():
            self.models[model].resume(plan)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set or every model has run its rounds."""
        sub = await self.start()
        watch = asyncio.create_task(self.health.watch(self._lag, stop))
        try:
            # What was published while no coordinator ran, before any deadline is judged.
            replayed = await catch_up(sub, self._handle_now, self.catch_up_idle_ms, self.position)
            log.info("coordinator.started", replayed=replayed)
            while not stop.is_set() and not self.finished.is_set():
                record = await sub.get(self.tick_ms / 1000)
                now = self.clock()
                if record is not None:
                    await self.handle(record, now)
                for rounds in self.models.values():
                    await rounds.on_tick(now)
                if self._hold_open_rounds():
                    await self._commit()
                if all(m.finished for m in self.models.values()):
                    self.finished.set()
        finally:
            try:
                for rounds in self.models.values():
                    await rounds.settle()  # a version being stored is finished, not torn
                self._hold_open_rounds()
                await self._commit()
            finally:
                watch.cancel()
                await sub.close()
                log.info("coordinator.stopped", dead_lettered=dict(self.errors))

    async def _lag(self) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """(end offsets, next offset to handle) of the topics read, for health; a partition
        not started yet (before the catch-up) does not count."""
        assert self._sub is not None
        return await self._sub.end_offsets(), self.position.positions()

    async def _handle_now(self, record: Record) -> None:
        await self.handle(record, self.clock())

    def _hold_open_rounds(self) -> bool:
        """Hold the read position at each open round's opening; True if a hold changed."""
        changed = False
        for name, rounds in self.models.items():
            state = rounds.state
            open_id = (
                state.plan.round_id if state is not None and state.phase in OPEN_PHASES else None
            )
            if self._held.get(name) == open_id:
                continue
            changed = True
            self.position.release(name)
            self._held.pop(name, None)
            if open_id is not None:
                self.position.hold(name)
                self._held[name] = open_id
        return changed

    async def _commit(self) -> None:
        offsets = self.position.to_commit()
        if not offsets or self._sub is None:
            return
        try:
            await self._sub.commit(offsets)
        except BusError as e:  # a later commit covers it; a replay changes nothing decided
            log.warning("offsets.commit_failed", error=repr(e))
            return
        self.position.committed(offsets)

    async def handle(self, record: Record, now_ms: int) -> None:
        """Dispatch one record; one it cannot use is dead-lettered and counted, never fatal."""
        self.position.handled(record)
        try:
            if record.topic in self._partials:
                partial = self._partials[record.topic].add(record.value, now_ms)
                if partial is not None and not isinstance(partial, PartialAggregate):
                    raise UnknownMessageError(f"{type(partial).__name__} on the partials topic")
                owner = topics.parse_partials_topic(record.topic)
                if isinstance(partial, PartialAggregate) and partial.hospital_id != owner:
                    raise ValidationError(
                        "hospital_id", f"{partial.hospital_id!r} on {owner!r}'s partials topic"
                    )
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
        finally:
            self.health.handled()
