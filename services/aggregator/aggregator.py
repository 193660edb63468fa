"""The hospital aggregator: records in, partials and audit events out (bus port only).

Start-up: read its ``fl.v1.partials.{hospital}`` to learn the rounds this hospital already
published (they stay closed), catch up with round plans and model versions,
then replay the updates group's backlog before the first tick, so a restart
after a deadline still counts what was uploaded before it.

Choices: an update for a round newer than any plan this aggregator has read
is parked until that plan arrives (the plans topic and the updates topic are
read by different consumers, so a fast device's update can overtake the plan),
for at most ``park_ms``; after that it is rejected as ``unknown_round``.
Parked records hold the offset commit back like any unpublished round's.
Tokens are checked at the record's timestamp (upload time), so replaying
after the token's expiry does not reject what was valid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from flbus.errors import BusError
from flbus.port import LogBus, LogSubscription, Record, TopicPartition
from flcore.aggregation import FOLD_BATCH
from flcore.kernels import warm
from flproc.health import ConsumerLag
from schemas import ModelUpdate, ModelVersion, RoundPlan, decode
from schemas.chunking import ChunkedReceiver
from schemas.topics import (
    KAFKA_MODEL_VERSIONS,
    KAFKA_ROUND_PLANS,
    partials_topic,
    updates_topic,
)
from services.aggregator.config import AggregatorConfig
from services.aggregator.consume import catch_up, header_claims, key_id
from services.aggregator.intake import (
    GotFailure,
    GotUpdate,
    Poison,
    Refused,
    Undecodable,
    UpdateIntake,
)
from services.aggregator.ledger import OffsetLedger
from services.aggregator.outbox import Outbox, published_round
from services.aggregator.stats import AggregatorStats
from services.aggregator.tally import Decision, RoundBook
from services.common.dead_letters import DeadLetters

STALL_S = 20.0
"""Health: updates waiting on the topic and none handled for this long means stalled."""


class Aggregator:
    """One hospital's aggregator; ``run`` until ``stop`` is set."""

    def __init__(
        self,
        config: AggregatorConfig,
        bus: LogBus,
        clock: Callable[[], int],
        health: ConsumerLag | None = None,
    ) -> None:
        self.config = config
        self.book = RoundBook(
            config.hospital,
            max_examples=config.max_examples,
            max_robust_bytes=config.max_robust_bytes,
            history=config.example_memory(),
        )
        self._bus, self._clock = bus, clock
        self._intake = UpdateIntake(config.stream_limits)
        self._versions = ChunkedReceiver(config.stream_timeout_ms)
        self._ledger = OffsetLedger()
        self._stats = AggregatorStats()
        self._out = Outbox(bus, config.hospital, clock)
        self._dead = DeadLetters(
            bus, "aggregator", clock, hospital=config.hospital, counts=self._stats.dead_lettered
        )
        self._updates: LogSubscription | None = None
        self._parked: list[tuple[GotUpdate, int, int]] = []  # (update, sent_ms, parked_at_ms)
        self._log = structlog.get_logger("aggregator").bind(hospital=config.hospital)
        self.health = health or ConsumerLag(f"updates of {config.hospital}", STALL_S)

    def problem(self) -> str | None:
        """Health: updates wait and none was handled for a while, or Kafka does not answer."""
        return self.health.problem()

    def stats(self) -> AggregatorStats:
        """A snapshot of the counters."""
        return self._stats.copy()

    def uploads_held(self) -> tuple[int, int]:
        """Uploads in flight and the bytes they claim (bounded by the stream limits)."""
        return self._intake.open_uploads, self._intake.held_bytes

    async def run(self, stop: asyncio.Event) -> None:
        """Learn published rounds and plans, replay the backlog, then fold and tick until stop."""
        idle, tick_s = self.config.catch_up_idle_ms, self.config.tick_ms / 1000
        # Compile the fold now, off the loop, not inside the first update's handling.
        await asyncio.to_thread(warm, FOLD_BATCH)
        async with await self._bus.subscribe([partials_topic(self.config.hospital)]) as partials:
            await catch_up(partials, self._on_partial, idle)
        topic, group = updates_topic(self.config.hospital), self.config.consumer_group
        async with (
            await self._bus.subscribe([KAFKA_ROUND_PLANS, KAFKA_MODEL_VERSIONS]) as control,
            await self._bus.subscribe([topic], group=group, start="earliest") as updates,
        ):
            self._updates = updates
            watch = asyncio.create_task(self.health.watch(self._lag, stop))
            try:
                await catch_up(control, self.on_control, idle)
                replayed = await catch_up(updates, self.on_update, idle)
                self._log.info(
                    "aggregator.started", replayed=replayed, closed=len(self.book.closed)
                )
                while not stop.is_set():
                    await self._drain(control)
                    record = await updates.get(tick_s)
                    if record is not None:
                        await self._drain(control)
                        await self.on_update(record)
                    await self.tick()
                await self._commit()
            finally:
                watch.cancel()
        self._log.info("aggregator.stopped", **self._stats.as_dict())

    async def _lag(self) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """(end offsets, next offset to handle) of the updates partitions, for health."""
        assert self._updates is not None
        ends, at = await self._updates.end_offsets(), self._ledger.positions()
        for tp in ends.keys() - at.keys():  # nothing handled there yet: from the commit
            at[tp] = await self._updates.committed(tp) or 0
        return ends, at

    async def _drain(self, control: LogSubscription) -> None:
        while (record := await control.get(0)) is not None:
            await self.on_control(record)

    async def _on_partial(self, record: Record) -> None:
        await self._dead.guard(record, self._partial)

    async def _partial(self, record: Record) -> None:
        done = published_round(record, self.config.hospital)
        if done is not None:
            self.book.closed.add(done)

    async def on_control(self, record: Record) -> None:
        """Handle one round plan or one model-version chunk; dead-letter one it cannot use."""
        await self._dead.guard(record, self._control)

    async def _control(self, record: Record) -> None:
        now = self._clock()
        if record.topic == KAFKA_ROUND_PLANS:
            plan = decode(record.value, RoundPlan)
            before = self.book.open.get(plan.model)
            await self._publish(self.book.on_plan(plan))
            tally = self.book.open.get(plan.model)
            if tally is not None and tally is not before:
                goal = tally.state.goal
                self._log.info("round.opened", model=plan.model, round=plan.round_id, goal=goal)
            await self._refused_plans()
            await self._unpark(lambda got, _at: not self._ahead(got))
            return
        version = self._versions.add(record.value, now)
        if isinstance(version, ModelVersion):
            self.book.on_manifest(version.model, version.version, version.tensors.manifest)
            await self._refused_plans()

    async def _refused_plans(self) -> None:
        while self.book.refused:
            plan, why = self.book.refused.pop(0)
            self._stats.plans_refused += 1
            self._log.warning("plan.refused", model=plan.model, round=plan.round_id, detail=why)
            await self._out.audit("plan.refused", plan.model, plan.round_id, "", "over_memory", why)

    async def on_update(self, record: Record) -> None:
        """Handle one record of the updates topic: fold, reject, count a dropped device,
        or dead-letter a record that is no update at all (and commit past it)."""
        self._ledger.read(record)
        try:
            if not await self._dead.guard(record, self._update):
                await self._commit()
        finally:
            self.health.handled()

    async def _update(self, record: Record) -> None:
        now = self._clock()
        got = self._intake.feed(record, now)
        if isinstance(got, GotUpdate):
            await self._on_update(got, min(now, record.timestamp_ms or now))
        elif isinstance(got, GotFailure):
            await self._on_failure(got, record)
        elif isinstance(got, Refused):  # noqa: SIM114 (over a limit, not a poison record)
            model, round_id = header_claims(record)
            await self._reject(model, round_id, key_id(record), got.reason, got.detail)
        elif isinstance(got, Undecodable):
            model, round_id = header_claims(record)
            await self._reject(model, round_id, key_id(record), got.reason, got.detail)
        elif isinstance(got, Poison):
            await self._dead.send(record, got.reason, got.detail)
            await self._commit()

    def _ahead(self, got: GotUpdate) -> bool:
        """Whether the update is for a round newer than every plan read so far."""
        u = got.update
        tally = self.book.open.get(u.model)
        plan = tally.plan if tally is not None else self.book.plans.get(u.model)
        known = plan.round_id if plan is not None else -1
        return u.round_id > known and (u.model, u.round_id) not in self.book.closed

    async def _unpark(self, ready: Callable[[GotUpdate, int], bool]) -> None:
        """Handle the parked updates ``ready(update, parked_at_ms)`` picks, in arrival order."""
        if not self._parked:
            return
        keep: list[tuple[GotUpdate, int, int]] = []
        go: list[tuple[GotUpdate, int, int]] = []
        for entry in self._parked:
            (go if ready(entry[0], entry[2]) else keep).append(entry)
        self._parked = keep
        for got, sent_ms, _ in go:
            await self._on_update(got, sent_ms, may_park=False)

    async def _on_update(self, got: GotUpdate, sent_ms: int, *, may_park: bool = True) -> None:
        u = got.update
        if may_park and self._ahead(got) and len(self._parked) < self.config.park_limit:
            self._parked.append((got, sent_ms, self._clock()))
            self._log.info("update.parked", model=u.model, round=u.round_id, device=u.device_id)
            return
        tally = self.book.open.get(u.model)
        if tally is not None and tally.plan.round_id == u.round_id:
            tally.hold(got.tp, got.first)
        found = self.book.check(u, now_ms=sent_ms, secret=self.config.token_secret)
        if found is not None:
            await self._reject(u.model, u.round_id, u.device_id, found.reason, found.detail)
            return
        self._stats.accepted += 1
        self._log.debug("update.accepted", model=u.model, round=u.round_id, device=u.device_id)
        tally = self.book.open[u.model]
        clamped = tally.clamped
        decision = self.book.accept(u)
        if tally.clamped > clamped:
            await self._clamped(u)
        await self._publish([decision] if decision is not None else [])

    async def _clamped(self, u: ModelUpdate) -> None:
        self._stats.clamped += 1
        growth = self.config.example_growth
        why = f"claimed {u.num_examples} examples, over {growth} x its last report"
        self._log.warning(
            "update.clamped", model=u.model, round=u.round_id, device=u.device_id, detail=why
        )
        await self._out.audit("update.clamped", u.model, u.round_id, u.device_id, "clamped", why)

    async def _on_failure(self, got: GotFailure, record: Record) -> None:
        f = got.failure
        tally = self.book.open.get(f.model)
        if (
            tally is None
            or tally.plan.round_id != f.round_id
            or f.hospital_id != tally.state.hospital
        ):
            self._log.info("failure.ignored", model=f.model, round=f.round_id, device=f.device_id)
            return
        tally.hold(record.tp, record.offset)
        tally.dropped += 1
        self._stats.dropped += 1
        self._log.info("device.dropped", model=f.model, round=f.round_id, device=f.device_id)
        await self._out.audit(
            "device.dropped", f.model, f.round_id, f.device_id, f.reason, f.detail
        )

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
        await self._out.audit("update.rejected", model, round_id, device, reason, detail)

    async def tick(self) -> None:
        """Expire stalled uploads and publish every round whose deadline passed."""
        now = self._clock()
        for sid, why in self._intake.expire(now):
            await self._reject("", -1, "", "incomplete_upload", f"stream {sid!r} {why}")
        # Parked too long: the plan never came (or this aggregator missed it).
        await self._unpark(lambda _got, at: now - at >= self.config.park_ms)
        await self._publish(self.book.tick(now))

    async def _publish(self, decisions: list[Decision]) -> None:
        for tally, decision in decisions:
            partial = tally.partial(self.config.hospital)
            await self._out.partial(partial)
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
        parked: dict[TopicPartition, int] = {}
        for got, _, _ in self._parked:
            parked[got.tp] = min(got.first, parked.get(got.tp, got.first))
        floors = [*self.book.floors(), self._intake.floors(), parked]
        offsets = self._ledger.to_commit(floors)
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
