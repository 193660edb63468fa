"""A population of simulated devices in one process, each a real ``Device``.

Every device owns its shard of the bundled scikit-learn data (loaded into its
own example store as predictions with late labels), is available always or
on some compressed nights of the week (``SimClock``: a simulated week passes in
``week_seconds`` of wall time), may vanish mid-round (``dropout``) and trains
slower or faster (a per-device ``slowdown`` factor). Deadlines in messages stay
wall-clock milliseconds; only availability runs on simulated time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import structlog

from device_sdk.client import Device, DeviceConfig
from device_sdk.eligibility import (
    ConditionsProvider,
    DeviceConditions,
    FixedConditions,
    SimulatedConditions,
)
from device_sdk.ledger import RoundLedger
from device_sdk.store import ExampleStore
from device_sdk.trainer import Trainer
from flbus.errors import BusError
from flbus.port import PubSubBus
from flcore.signing import TrustedKeys
from flproc.clock import wall_ms
from flsim.attack import Attack, AttackerBus
from flsim.datasets import model_dataset
from flsim.partition import Partition
from flsim.synthetic import SyntheticTrainer
from modelzoo.registry import get_spec
from schemas import decode
from schemas.chunking import decode_stream

log = structlog.get_logger(__name__)

Availability = Literal["always", "nights"]
Storage = Literal["files", "memory"]
AVAILABILITIES: tuple[str, ...] = ("always", "nights")
ALWAYS = DeviceConditions(
    charging=True, unmetered_network=True, idle=True, battery_level=1.0, free_memory_mb=4096
)
WEEK = timedelta(days=7)


@dataclass(frozen=True)
class SimClock:
    """Simulated wall time running ``scale`` times faster than the real clock."""

    start: datetime
    wall_start_ms: int
    scale: float
    wall: Callable[[], int] = wall_ms

    @classmethod
    def compressed(
        cls,
        week_seconds: float,
        *,
        start: datetime | None = None,
        wall: Callable[[], int] = wall_ms,
    ) -> SimClock:
        """A clock on which one simulated week lasts ``week_seconds`` real seconds."""
        if week_seconds <= 0:
            raise ValueError(f"week_seconds must be > 0, got {week_seconds}")
        begin = start or datetime(2026, 1, 5, 18, 0, tzinfo=UTC)  # a Monday evening
        return cls(begin, wall(), WEEK.total_seconds() / week_seconds, wall)

    def now(self) -> datetime:
        """The simulated time now."""
        return self.start + timedelta(milliseconds=(self.wall() - self.wall_start_ms) * self.scale)


@functools.lru_cache(maxsize=64)
def shared_decode(data: bytes) -> Any:
    """Decode a retained broadcast (a plan) once per process: simulated devices share it.

    Every device of a model receives the same plan bytes; decoding them once
    instead of K times matters with hundreds of devices in one process. Safe
    because decoded messages are frozen; a bad payload raises each time.
    """
    return decode(data)


class SharedStreams:
    """Decode each reassembled stream (a model version, an artifact bundle) once per process.

    Every simulated device reassembles the same retained streams; each device's
    reassembler has checked its payload against the stream's digest, so the
    (class, digest, size) names the payload and the decoded (frozen) message is
    shared: one decode, and one signature digest (``TrustedKeys`` remembers the
    object it verified), instead of one per device. The digest is xxh3, not a
    cryptographic hash: a crafted collision could make devices see the message
    decoded first, which still passes the same signature check. Bounded.
    """

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._decoded: OrderedDict[tuple[type, bytes, int], Any] = OrderedDict()

    def __call__(self, cls: type, digest: bytes, payload: memoryview) -> Any:
        """The decoded message of a verified payload (raises as ``decode`` does)."""
        key = (cls, bytes(digest), payload.nbytes)
        msg = self._decoded.get(key)
        if msg is None:
            msg = decode_stream(cls, digest, payload)
            self._decoded[key] = msg
            if len(self._decoded) > self._size:
                self._decoded.popitem(last=False)
        else:
            self._decoded.move_to_end(key)
        return msg


def _conditions(availability: str, seed: int) -> ConditionsProvider:
    if availability == "always":
        return FixedConditions(ALWAYS)
    if availability == "nights":
        return SimulatedConditions(seed=seed)
    raise ValueError(f"availability must be one of {AVAILABILITIES}, got {availability!r}")


def _storage(storage: str, config: DeviceConfig) -> dict[str, Any]:
    if storage == "files":
        return {}  # the Device opens sqlite files under its storage_dir
    if storage == "memory":
        widths = {m: get_spec(m).feature_width for m in config.models}
        return {"store": ExampleStore(":memory:", widths), "ledger": RoundLedger(":memory:")}
    raise ValueError(f"storage must be files or memory, got {storage!r}")


def load_shard(device: Device, model: str, rows: Sequence[int], rng: np.random.Generator) -> None:
    """Put ``rows`` of the model's data set into the device's store, predicted days ago,
    labelled now (the late labels have all arrived)."""
    data = model_dataset(get_spec(model))
    now = datetime.fromtimestamp(device.clock() / 1000, UTC)
    for row in rows:
        example_id = f"{model}:{row}"
        predicted = now - timedelta(days=float(rng.uniform(1, 60)))
        device.record_prediction(example_id, data.X[row], -1, predicted, model=model)
        device.attach_label(example_id, int(data.y[row]), now)


class Population:
    """K simulated devices sharing one event loop (and, optionally, one training executor)."""

    def __init__(
        self,
        devices: Sequence[Device],
        *,
        buses: Sequence[PubSubBus] = (),
        manage_buses: bool,
        poll_interval_s: float = 0.25,
    ) -> None:
        self.devices = list(devices)
        self._buses = list(buses)
        self._manage = manage_buses
        self._poll_s = poll_interval_s

    @classmethod
    def from_partition(
        cls,
        partitions: Mapping[str, Partition],
        bus_factory: Callable[[str], PubSubBus],
        storage_root: Path,
        *,
        coordinator_key: TrustedKeys,
        dropout: float = 0.0,
        availability: str = "always",
        seed: int = 0,
        executor: Executor | None = None,
        week_seconds: float = 60.0,
        max_slowdown: float = 1.0,
        manage_buses: bool = True,
        clock: Callable[[], int] = wall_ms,
        poll_interval_s: float = 0.25,
        attack: Attack | None = None,
        storage: Storage = "files",
        synthetic: bool = False,
        place: Mapping[str, int] | None = None,
    ) -> Population:
        """One Device per (hospital, device) of the partitions, holding its rows of each model.

        Every device pins ``coordinator_key``. ``bus_factory(device_id)`` gives each
        device its bus (an ``MqttBus`` with that client id, or one shared
        ``MemoryPubSub``). With ``manage_buses`` the population starts and stops
        every distinct bus it was given. With ``attack``, its share of the devices
        (drawn among these partitions' devices) upload poisoned updates
        (:mod:`flsim.attack`).
        ``storage="memory"`` keeps each device's examples and round ledger in
        in-memory sqlite (no file descriptor; lost when the process ends), so a
        process holds hundreds of devices; ``synthetic`` makes devices upload
        random updates of the model's size instead of training with ORT.
        ``place`` gives each device id its index in the whole population when
        these partitions are one shard of it (default: its index here).
        """
        sim = SimClock.compressed(week_seconds, wall=clock)
        shards: dict[tuple[str, str], dict[str, tuple[int, ...]]] = {}
        for model, partition in partitions.items():
            for shard in partition.devices:
                shards.setdefault((shard.hospital, shard.device), {})[model] = shard.train
        ordered = sorted(shards.items())
        # A device's seeds follow its place in the whole population, so a shard's
        # devices draw what they would draw in one process (dropout, data, speed).
        places = [place[device_id] if place else i for i, ((_, device_id), _) in enumerate(ordered)]
        slowdowns = np.random.default_rng(seed).uniform(
            1.0, max_slowdown, max(places, default=0) + 1
        )
        attackers = attack.choose([d for _, d in sorted(shards)]) if attack else frozenset()
        devices: list[Device] = []
        buses: list[PubSubBus] = []
        streams = SharedStreams()
        for index, ((hospital, device_id), rows) in zip(places, ordered, strict=True):
            device_seed = seed * 100_003 + index
            config = DeviceConfig(
                device_id=device_id,
                hospital_id=hospital,
                models=tuple(sorted(rows)),
                storage_dir=Path(storage_root) / hospital / device_id,
                dropout=dropout,
                slowdown=float(slowdowns[index]) if max_slowdown > 1 else 1.0,
                poll_interval_s=poll_interval_s,
                artifact_dir=Path(storage_root) / "artifacts",
            )
            bus = bus_factory(device_id)
            if all(b is not bus for b in buses):
                buses.append(bus)
            if attack is not None and device_id in attackers:
                bus = AttackerBus(bus, attack)  # the inner bus is started and stopped
            device = Device(
                config,
                bus,
                coordinator_key=coordinator_key,
                conditions=_conditions(availability, device_seed),
                clock=clock,
                conditions_clock=sim.now,
                seed=device_seed,
                executor=executor,
                decode_broadcast=shared_decode,
                decode_stream=streams,
                **_storage(storage, config),
                trainer_factory=SyntheticTrainer if synthetic else Trainer,
            )
            data_rng = np.random.default_rng(device_seed)
            for model, train_rows in sorted(rows.items()):
                load_shard(device, model, train_rows, data_rng)
            devices.append(device)
        log.info(
            "population.created",
            devices=len(devices),
            models=sorted(partitions),
            availability=availability,
            dropout=dropout,
            attackers=sorted(attackers),
            attack=attack.behaviour if attack else None,
        )
        return cls(devices, buses=buses, manage_buses=manage_buses, poll_interval_s=poll_interval_s)

    async def run(self, stop: asyncio.Event) -> None:
        """Run every device until ``stop`` is set."""
        if self._manage:
            await asyncio.gather(*(self._start(bus, stop) for bus in self._buses))
        try:
            async with asyncio.TaskGroup() as group:
                for device in self.devices:
                    group.create_task(device.run(stop, tick=False))
                group.create_task(self._tick(stop))
        finally:
            for device in self.devices:
                device.close()
            if self._manage:
                for bus in self._buses:
                    with contextlib.suppress(BusError):
                        await bus.stop()
            log.info("population.stopped", **self.totals())

    async def _tick(self, stop: asyncio.Event) -> None:
        """Tick every device each poll interval from one task (not one timer per device)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll_s)
            if stop.is_set():
                return
            for device in self.devices:
                await device.tick()

    @staticmethod
    async def _start(bus: PubSubBus, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                await bus.start()
                return
            except BusError as exc:
                log.warning("bus.unavailable", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def poisoned(self) -> int:
        """Updates the attackers' buses rewrote."""
        return sum(d.bus.poisoned for d in self.devices if isinstance(d.bus, AttackerBus))

    def spans(self) -> list[tuple[int, int]]:
        """When some device was training: (start, end) in wall milliseconds."""
        return [sp for dev in self.devices for sp in dev.stats.training_spans]

    def __len__(self) -> int:
        return len(self.devices)

    def subscribed(self) -> int:
        """Devices whose subscription is live (ready for a plan)."""
        return sum(d.subscribed.is_set() for d in self.devices)

    def totals(self) -> dict[str, Any]:
        """Check-ins, tasks, uploads, failures, dropouts and training seconds, summed."""
        keys = ("checkins", "tasks", "retries", "uploads", "failures", "dropouts", "bus_errors")
        out: dict[str, Any] = {k: sum(getattr(d.stats, k) for d in self.devices) for k in keys}
        out["train_seconds"] = round(sum(d.stats.train_seconds for d in self.devices), 3)
        out["poisoned"] = self.poisoned()
        return out
