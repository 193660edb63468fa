"""Composition root and run loop of a selector replica (any number may run side by side)."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections import Counter

import structlog

from flbus.errors import BusClosedError, BusError
from flbus.port import LogBus, LogSubscription, PubSubBus, Record, Subscription, TopicPartition
from flproc.clock import Clock
from flproc.health import Progress
from schemas import CheckIn, decode
from schemas.errors import SchemaError
from schemas.topics import (
    CHECKIN,
    EVAL,
    KAFKA_ARTIFACTS,
    KAFKA_MODEL_VERSIONS,
    KAFKA_ROUND_PLANS,
    MQTT_ROOT,
    UPLOAD,
    DeviceTopic,
    parse_device_topic,
)
from services.common.dead_letters import DeadLetters, describe, reason_for
from services.selector.bridge import PlanBook, StreamBridge, bundle_topic, version_topic
from services.selector.config import SelectorConfig
from services.selector.guards import RateLimit, rate_limited
from services.selector.outputs import Out, ToDevice
from services.selector.parking import Parking
from services.selector.publish import Publisher
from services.selector.selector import awaiting_plan, handle_device, plan_pending, rate_retry

_log = structlog.get_logger("selector")
STOP_GRACE_S = 2.0
BROADCAST_GROUP = "selector.broadcast"
"""The consumer group of the version and artifact topics: one replica forwards each.

Every replica forwarding every model version put one copy per replica through
the broker to every device, ahead of its plan and its task: at 1,000 devices
and a 400 kB version, two replicas moved 800 MB a round where 400 MB do."""


def device_filter(leaf: str) -> str:
    """Filter over every device's ``leaf`` topic; the bus adds ``$share/<group>/``."""
    return f"{MQTT_ROOT}/+/+/{leaf}"


class Selector:
    """One selector replica; the buses are started and stopped by the caller."""

    def __init__(
        self, config: SelectorConfig, pubsub: PubSubBus, log_bus: LogBus, clock: Clock
    ) -> None:
        self.config, self.pubsub, self.log_bus, self.clock = config, pubsub, log_bus, clock
        self.plans = PlanBook()
        self._bridges = {topic: _bridge(topic) for topic in BROADCASTS}
        self.stats: Counter[str] = Counter()
        self.publisher = Publisher(pubsub, log_bus, self.stats, config.tracked_devices)
        self.dead_letters = DeadLetters(
            log_bus, "selector", clock, counts=self.stats, prefix="dead_lettered."
        )
        self.ready = asyncio.Event()  # set once plans are loaded and devices are subscribed
        self.parking = Parking(config.park_max)
        self.rate = RateLimit(config.checkin_interval_ms, config.tracked_devices)
        self.progress = Progress("device messages", config.stall_s)
        # The retained device-plane state this replica published, in publication order,
        # republished whenever the MQTT link comes back (the broker may have lost it).
        self.retained: dict[str, ToDevice] = {}
        self.forwarding: frozenset[str] = frozenset()  # broadcast topics this replica forwards
        self._reconnected = asyncio.Event()
        self._later: set[asyncio.Task[None]] = set()

    def problem(self) -> str | None:
        """Health: why this replica is not serving devices now, or None (see flproc.health)."""
        if not self.pubsub.connected:
            return "mqtt: not connected"
        return self.progress.problem()

    async def run(self, stop: asyncio.Event) -> None:
        """Catch up on the service plane, then serve devices until ``stop`` is set.

        Every replica reads every plan (admission needs it) and republishes it
        retained. Model versions and artifact bundles are read in
        :data:`BROADCAST_GROUP`, so each reaches the devices through one replica:
        the one holding the topic's partitions, which hand over (and are re-read
        from the start) when a replica leaves or joins.
        """
        service = await self.log_bus.subscribe([KAFKA_ROUND_PLANS], start="earliest")
        subs: list[Subscription] = [service]
        self.pubsub.on_reconnect(self._reconnected.set)
        try:
            broadcasts = await self.log_bus.subscribe(
                list(BROADCASTS), group=BROADCAST_GROUP, start="earliest"
            )
            subs.append(broadcasts)
            await self._catch_up(service, stop)
            held = await self._take_over(broadcasts, frozenset(), stop)
            # Two subscriptions, two worker pools: uploads (and evaluations) never wait
            # behind a burst of check-ins, in the bus or in a worker queue.
            planes = {}
            for plane, leaves in (("checkin", (CHECKIN,)), ("upload", (UPLOAD, EVAL))):
                planes[plane] = await self.pubsub.subscribe(
                    [device_filter(leaf) for leaf in leaves], share_group=self.config.share_group
                )
                subs.append(planes[plane])
            self.ready.set()
            _log.info("selector.ready", plans=sorted(self.plans.plans), **self._cfg())
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self._service_loop(service)),
                    tg.create_task(self._broadcast_loop(broadcasts, held, stop)),
                    *(tg.create_task(self._device_loop(sub)) for sub in planes.values()),
                    tg.create_task(self._stats_loop(stop)),
                    tg.create_task(self._parking_loop(stop)),
                    tg.create_task(self._retained_loop(stop)),
                ]
                await stop.wait()
                for sub in subs:
                    await sub.close()
                # Work stuck on a dead broker must not hold the stop: bounded, then cancelled.
                _, stuck = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
                for task in stuck:
                    task.cancel()
        finally:
            for sub in subs:
                await sub.close()
            for task in list(self._later):
                task.cancel()
            _log.info("selector.stats", final=True, counters=dict(self.stats))

    # -- service plane --------------------------------------------------------

    async def _apply(self, record: Record) -> list[ToDevice]:
        try:
            if record.topic == KAFKA_ROUND_PLANS:
                return self.plans.offer(record)
            return self._bridges[record.topic].offer(record)
        except BusError:
            raise
        except Exception as exc:  # a poison record (plans are reread at every start) is skipped
            await self.dead_letters.send(record, reason_for(exc), describe(exc))
            return []

    async def _catch_up(
        self, service: LogSubscription, stop: asyncio.Event, topics: frozenset[str] | None = None
    ) -> None:
        """Replay the service plane (the partitions of ``topics``, default all) to where it
        ends now; publish only the last retained value of each device-plane topic.

        Records of other partitions read meanwhile are applied too. A partition
        taken away by a rebalance is no longer waited for.
        """
        ends = {
            tp: end
            for tp, end in (await service.end_offsets()).items()
            if end > 0 and (topics is None or tp.topic in topics)
        }
        latest: dict[str, ToDevice] = {}
        while ends and not stop.is_set():
            record = await service.get(timeout=0.5)
            held = service.assignment()
            ends = {tp: end for tp, end in ends.items() if tp in held}
            if record is None:
                continue
            for out in await self._apply(record):
                latest.pop(out.topic, None)  # re-insert: keep publication order (seq 0 last)
                latest[out.topic] = out
            tp = TopicPartition(record.topic, record.partition)
            if tp in ends and record.offset + 1 >= ends[tp]:
                del ends[tp]
        await self._publish_retained(list(latest.values()))

    async def _service_loop(self, service: LogSubscription) -> None:
        async for record in service:
            await self._publish_retained(list(await self._apply(record)))
            if record.topic == KAFKA_ROUND_PLANS:
                self._release_parked()

    async def _take_over(
        self, sub: LogSubscription, held: frozenset[TopicPartition], stop: asyncio.Event
    ) -> frozenset[TopicPartition]:
        """Follow a change of the broadcast partitions this replica holds; the new holding.

        A topic whose partitions changed is forgotten (its bridge and what this
        replica keeps retained from it: another replica forwards it now) and,
        where this replica still holds any of it, re-read from the start, so the
        newest version and bundle are on the broker even if the replica that
        held them died before forwarding them.
        """
        now = sub.assignment()
        changed = frozenset(tp.topic for tp in now ^ held)
        for topic in changed:
            what = self._bridges[topic].what
            self._bridges[topic] = _bridge(topic)
            self.retained = {t: o for t, o in self.retained.items() if o.what != what}
            for tp in now:
                if tp.topic == topic:
                    await sub.seek(tp, 0)
        if changed:
            self.forwarding = frozenset(tp.topic for tp in now)
            _log.info("selector.broadcasts", forwarding=sorted(self.forwarding))
            await self._catch_up(sub, stop, changed)
        return now

    async def _broadcast_loop(
        self, sub: LogSubscription, held: frozenset[TopicPartition], stop: asyncio.Event
    ) -> None:
        """Forward the versions and bundles of the partitions held in :data:`BROADCAST_GROUP`."""
        while not stop.is_set():
            if sub.assignment() != held:
                held = await self._take_over(sub, held, stop)
                continue
            try:
                record = await sub.get(timeout=0.5)
            except BusClosedError:
                return
            if record is not None:
                await self._publish_retained(list(await self._apply(record)))

    async def _publish_retained(self, outs: list[ToDevice]) -> None:
        await self.publisher.carry_out(outs)
        for out in outs:
            self.retained.pop(out.topic, None)
            if out.value:  # an empty retained payload is a clear
                self.retained[out.topic] = out

    async def _retained_loop(self, stop: asyncio.Event) -> None:
        """After every reconnect, republish the retained plans, versions and artifacts."""
        while await _first(self._reconnected, stop):
            self._reconnected.clear()
            outs = list(self.retained.values())
            await self.publisher.carry_out(outs)
            self.stats["retained.republished"] += len(outs)
            _log.info("retained.republished", messages=len(outs))

    # -- device plane ---------------------------------------------------------

    async def _device_loop(self, devices: Subscription) -> None:
        """Spread one plane's messages over its workers by topic (a device's chunks in order)."""
        queues: list[asyncio.Queue[Record | None]] = [
            asyncio.Queue(maxsize=256) for _ in range(self.config.workers)
        ]
        async with asyncio.TaskGroup() as tg:
            for queue in queues:
                tg.create_task(self._worker(queue))
            try:
                async for record in devices:
                    self.progress.took()
                    await queues[zlib.crc32(record.topic.encode()) % len(queues)].put(record)
            finally:
                for queue in queues:
                    await queue.put(None)

    async def _worker(self, queue: asyncio.Queue[Record | None]) -> None:
        while (record := await queue.get()) is not None:
            self.stats["device.messages"] += 1
            try:
                outs = self._screen(record, self.clock())
                if outs is not None:
                    await self.publisher.carry_out(outs)
            except Exception:  # a handler bug must not stop the replica
                self.stats["message.failed"] += 1
                _log.exception("message.failed", topic=record.topic)
            finally:
                self.progress.done()

    def _screen(self, record: Record, now_ms: int) -> list[Out] | None:
        """Rate limit and park check-ins, then handle; None when the check-in was parked.

        A check-in is decoded once here and handed on decoded.
        """
        c = self.config
        if not record.topic.endswith("/" + CHECKIN):
            return handle_device(record, self.plans.plans, now_ms, c)
        try:
            where: DeviceTopic | None = parse_device_topic(record.topic)
            checkin: CheckIn | None = decode(record.value, CheckIn)
        except SchemaError:
            where = checkin = None  # the handler audits it
        if where is None or checkin is None or where.hospital not in c.hospitals:
            return handle_device(record, self.plans.plans, now_ms, c)
        limited = self._rate_limited(where, checkin, now_ms)
        if limited is not None:
            return limited
        if c.plan_wait_ms and awaiting_plan(checkin, self.plans.plans, c):
            until = asyncio.get_running_loop().time() + c.plan_wait_ms / 1000
            if self.parking.park(record, frozenset(checkin.models), until):
                self.stats["checkin.parked"] += 1
                return None
            self.stats["checkin.park_full"] += 1
            return plan_pending(checkin, now_ms, c)
        return handle_device(record, self.plans.plans, now_ms, c, checkin)

    def _rate_limited(self, where: DeviceTopic, checkin: CheckIn, now_ms: int) -> list[Out] | None:
        """Refusals when every model of this check-in was asked about too recently, else None.

        The limit is per device, model and round: an honest device checks in for
        each of its models in turn, and again as soon as the next round opens
        (rounds may be shorter than the interval); a flood repeats itself within
        one round.
        """
        models = list(dict.fromkeys(checkin.models))[: self.config.max_models_per_checkin]
        plans = self.plans.plans
        waits = [
            self.rate.allow(
                (where.hospital, where.device, m, plans[m].round_id if m in plans else -1), now_ms
            )
            for m in models
        ]
        if not models or any(w is None for w in waits):
            return None
        retry_at = max(w for w in waits if w is not None)
        interval = self.config.checkin_interval_ms
        return [rate_limited(where, retry_at, now_ms, interval), *rate_retry(checkin, retry_at)]

    def _release_parked(self) -> None:
        for model in self.parking.models():
            if self.plans.selecting(model):
                released = self.parking.release(model)
                self.stats["checkin.released"] += len(released)
                self._answer_later(released)

    async def _parking_loop(self, stop: asyncio.Event) -> None:
        """Answer parked check-ins whose wait is over with the plans of the moment."""
        tick = min(0.05, self.config.plan_wait_ms / 4000) or 0.05
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick)
            expired = self.parking.expired(loop.time())
            self.stats["checkin.park_expired"] += len(expired)
            self._answer_later(expired)

    def _answer_later(self, records: list[Record]) -> None:
        if records:
            task = asyncio.create_task(self._answer(records))
            self._later.add(task)
            task.add_done_callback(self._later.discard)

    async def _answer(self, records: list[Record]) -> None:
        for record in records:
            try:
                outs = handle_device(record, self.plans.plans, self.clock(), self.config)
                await self.publisher.carry_out(outs)
            except Exception:  # a handler bug must not stop the replica
                self.stats["message.failed"] += 1
                _log.exception("message.failed", topic=record.topic)

    async def _stats_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.config.stats_interval_s)
            except TimeoutError:
                _log.info("selector.stats", counters=dict(self.stats))

    def _cfg(self) -> dict[str, object]:
        c = self.config
        return {
            "share_group": c.share_group,
            "workers": c.workers,
            "eligibility": sorted(c.eligibility.require),
        }


async def _first(wanted: asyncio.Event, stop: asyncio.Event) -> bool:
    """Wait for ``wanted`` or ``stop``; True when ``wanted`` came (and ``stop`` did not)."""
    waits = [asyncio.ensure_future(e.wait()) for e in (wanted, stop)]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    return not stop.is_set()


BROADCASTS = (KAFKA_MODEL_VERSIONS, KAFKA_ARTIFACTS)


def _bridge(topic: str) -> StreamBridge:
    """A fresh bridge of one broadcast topic."""
    if topic == KAFKA_MODEL_VERSIONS:
        return StreamBridge("ModelVersion", version_topic, "model_chunk")
    return StreamBridge("ArtifactBundle", bundle_topic, "artifact_chunk")


def build(config: SelectorConfig, pubsub: PubSubBus, log_bus: LogBus, clock: Clock) -> Selector:
    """Wire a selector replica from its config, its two buses and a millisecond clock."""
    return Selector(config, pubsub, log_bus, clock)
