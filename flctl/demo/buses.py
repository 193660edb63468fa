"""The buses of a demo run: shared in-memory ones, or one client per role on real brokers."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from flbus.memory import MemoryBus
from flbus.port import LogBus, PubSubBus
from flctl.demo.options import DemoOptions

B = TypeVar("B", LogBus, PubSubBus)


@dataclass
class Buses:
    """How each role gets its bus: shared in-memory ones, or one client per role."""

    pubsub: Callable[[str], PubSubBus]
    log: Callable[[str], LogBus]
    started: list[Any] = field(default_factory=list)
    mqtt_url: str | None = None  # real brokers: where sharded device processes connect

    async def log_for(self, name: str) -> LogBus:
        """A started log bus for role ``name``."""
        return await self._started(self.log(name))

    async def pubsub_for(self, name: str) -> PubSubBus:
        """A started pub/sub bus for role ``name``."""
        return await self._started(self.pubsub(name))

    async def _started(self, bus: B) -> B:
        if bus not in self.started:  # the in-memory buses are shared by every role
            await bus.start()
            self.started.append(bus)
        return bus


@contextlib.asynccontextmanager
async def open_buses(
    opts: DemoOptions, progress: Callable[[str], None], brokers_dir: Path
) -> AsyncIterator[Buses]:
    """The buses of the run; local brokers (data in ``brokers_dir``) run for it and stop after."""
    if opts.brokers == "memory":
        memory = MemoryBus()
        buses = Buses(lambda _: memory.pubsub, lambda _: memory.log)
        try:
            yield buses
        finally:
            await memory.stop()
        return
    from flbus.kafka import KafkaBus
    from flbus.mqtt import MqttBus

    local = None
    mqtt_url, kafka = opts.mqtt_url, opts.kafka_bootstrap
    if opts.brokers == "local":
        from flctl.brokers import LocalBrokers, free_port

        local = LocalBrokers(
            free_port(), free_port(), brokers_dir, kafka_controller_port=free_port(),
            progress=progress,
        )  # fmt: skip
        endpoints = await asyncio.to_thread(local.up, 180.0)
        mqtt_url, kafka = endpoints.mqtt_url, endpoints.kafka_bootstrap
    assert mqtt_url and kafka
    run = secrets.token_hex(3)
    buses = Buses(
        lambda name: MqttBus(mqtt_url, client_id=f"{name}-{run}"),
        lambda name: KafkaBus(kafka, client_id=name),
        mqtt_url=mqtt_url,
    )
    try:
        yield buses
    finally:
        for bus in reversed(buses.started):
            with contextlib.suppress(Exception):
                await bus.stop()
        if local is not None:
            await asyncio.to_thread(local.down)
