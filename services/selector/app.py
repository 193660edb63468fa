"""Composition root and run loop of a selector replica (any number may run side by side)."""

from __future__ import annotations

import asyncio
import zlib
from collections import Counter

import structlog

from flbus.errors import BusError
from flbus.port import LogBus, LogSubscription, PubSubBus, Record, Subscription, TopicPartition
from flproc.clock import Clock
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
)
from services.common.dead_letters import DeadLetters, describe, reason_for
from services.selector.bridge import PlanBook, StreamBridge, bundle_topic, version_topic
from services.selector.config import SelectorConfig
from services.selector.outputs import ToDevice
from services.selector.publish import Publisher
from services.selector.selector import handle_device

_log = structlog.get_logger("selector")


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
        self._bridges = {
            KAFKA_MODEL_VERSIONS: StreamBridge("ModelVersion", version_topic, "model_chunk"),
            KAFKA_ARTIFACTS: StreamBridge("ArtifactBundle", bundle_topic, "artifact_chunk"),
        }
        self.stats: Counter[str] = Counter()
        self.publisher = Publisher(pubsub, log_bus, self.stats)
        self.dead_letters = DeadLetters(
            log_bus, "selector", clock, counts=self.stats, prefix="dead_lettered."
        )
        self.ready = asyncio.Event()  # set once plans are loaded and devices are subscribed

    async def run(self, stop: asyncio.Event) -> None:
        """Catch up on the service plane, then serve devices until ``stop`` is set."""
        service = await self.log_bus.subscribe(
            [KAFKA_ROUND_PLANS, KAFKA_MODEL_VERSIONS, KAFKA_ARTIFACTS], start="earliest"
        )
        subs: list[Subscription] = [service]
        try:
            await self._catch_up(service, stop)
            devices = await self.pubsub.subscribe(
                [device_filter(leaf) for leaf in (CHECKIN, UPLOAD, EVAL)],
                share_group=self.config.share_group,
            )
            subs.append(devices)
            self.ready.set()
            _log.info("selector.ready", plans=sorted(self.plans.plans), **self._cfg())
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._service_loop(service))
                tg.create_task(self._device_loop(devices))
                tg.create_task(self._stats_loop(stop))
                await stop.wait()
                for sub in subs:
                    await sub.close()
        finally:
            for sub in subs:
                await sub.close()
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

    async def _catch_up(self, service: LogSubscription, stop: asyncio.Event) -> None:
        """Replay the service plane; publish only the last retained value of each topic."""
        ends = {tp: end for tp, end in (await service.end_offsets()).items() if end > 0}
        latest: dict[str, ToDevice] = {}
        while ends and not stop.is_set():
            record = await service.get(timeout=0.5)
            if record is None:
                continue
            for out in await self._apply(record):
                latest.pop(out.topic, None)  # re-insert: keep publication order (seq 0 last)
                latest[out.topic] = out
            tp = TopicPartition(record.topic, record.partition)
            if tp in ends and record.offset + 1 >= ends[tp]:
                del ends[tp]
        await self.publisher.carry_out(list(latest.values()))

    async def _service_loop(self, service: LogSubscription) -> None:
        async for record in service:
            await self.publisher.carry_out(list(await self._apply(record)))

    # -- device plane ---------------------------------------------------------

    async def _device_loop(self, devices: Subscription) -> None:
        """Spread messages over workers by topic, so one device's chunks stay in order."""
        queues: list[asyncio.Queue[Record | None]] = [
            asyncio.Queue(maxsize=256) for _ in range(self.config.workers)
        ]
        async with asyncio.TaskGroup() as tg:
            for queue in queues:
                tg.create_task(self._worker(queue))
            try:
                async for record in devices:
                    await queues[zlib.crc32(record.topic.encode()) % len(queues)].put(record)
            finally:
                for queue in queues:
                    await queue.put(None)

    async def _worker(self, queue: asyncio.Queue[Record | None]) -> None:
        while (record := await queue.get()) is not None:
            self.stats["device.messages"] += 1
            if self.config.plan_wait_ms and self._plan_behind(record):
                self.stats["checkin.waited_for_plan"] += 1
                await self.plans.changed(self.config.plan_wait_ms / 1000)
            try:
                outs = handle_device(record, self.plans.plans, self.clock(), self.config)
            except Exception:  # a handler bug must not stop the replica
                self.stats["message.failed"] += 1
                _log.exception("message.failed", topic=record.topic)
                continue
            await self.publisher.carry_out(outs)

    def _plan_behind(self, record: Record) -> bool:
        """A check-in for a model this replica knows no selecting plan of (yet)."""
        if not record.topic.endswith("/" + CHECKIN):
            return False
        try:
            checkin = decode(record.value, CheckIn)
        except SchemaError:
            return False
        return not any(self.plans.selecting(m) for m in checkin.models)

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


def build(config: SelectorConfig, pubsub: PubSubBus, log_bus: LogBus, clock: Clock) -> Selector:
    """Wire a selector replica from its config, its two buses and a millisecond clock."""
    return Selector(config, pubsub, log_bus, clock)
