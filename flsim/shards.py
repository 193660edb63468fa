"""A device population sharded over worker processes, so one machine runs thousands.

Why processes: each simulated device holds its own MQTT session (a paho client:
one TCP socket plus paho's wake-up socket pair, three descriptors), a process's
descriptor limit is commonly 1024 (the soft ``ulimit -n``), and paho's threaded
client (``network_thread``) uses ``select()``, which fails on any descriptor
numbered 1024 or more. A shard
keeps at most :data:`MAX_DEVICES_PER_SHARD` devices with in-memory stores
(``Population(storage="memory")``: no descriptor), so its descriptors stay
under ~800; processes also spread the population over every core.

The parent owns the shards: ``stop`` (SIGINT/SIGTERM in the command) stops
them all; a shard that exits on its own stops the rest and raises
``ShardDiedError`` naming it; each shard reports its totals, new training
spans and resident memory every ``REPORT_EVERY_S``, and the parent sums them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing as mp
import os
import queue
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from flsim.errors import ShardCapacityError, ShardDiedError
from flsim.partition import Partition

log = structlog.get_logger(__name__)

DESCRIPTORS_PER_DEVICE = 3  # paho: the socket and its wake-up socket pair
MAX_DEVICES_PER_SHARD = 250  # 750 descriptors + the process's own, well under 1024
REPORT_EVERY_S = 0.5
STOP_GRACE_S = 15.0


def shard_count(devices: int, requested: int, cores: int | None = None) -> int:
    """Worker processes for ``devices``: ``requested``, or (0) one per core or more if needed.

    Raises ShardCapacityError when ``requested`` processes cannot hold them all.
    """
    needed = math.ceil(devices / MAX_DEVICES_PER_SHARD)
    if requested == 0:
        return max(1, min(devices, max(cores or os.cpu_count() or 1, needed)))
    if requested < needed:
        raise ShardCapacityError(
            f"{devices} devices need at least {needed} worker processes of at most "
            f"{MAX_DEVICES_PER_SHARD} devices each (a device holds {DESCRIPTORS_PER_DEVICE} "
            f"descriptors; processes are often limited to 1024); got {requested}"
        )
    return min(requested, devices)


def split(partitions: Mapping[str, Partition], shards: int) -> list[dict[str, Partition]]:
    """Deal the devices round-robin over ``shards`` (each hospital spreads over all)."""
    keys = sorted({(d.hospital, d.device) for p in partitions.values() for d in p.devices})
    owner = {key: i % shards for i, key in enumerate(keys)}
    return [
        {
            model: replace(
                p, devices=tuple(d for d in p.devices if owner[(d.hospital, d.device)] == k)
            )
            for model, p in partitions.items()
        }
        for k in range(shards)
    ]


@dataclass(frozen=True)
class ShardPlan:
    """Everything one worker process needs (pickled to it)."""

    index: int
    partitions: dict[str, Partition]
    mqtt_url: str
    storage_root: Path
    options: dict[str, Any]  # Population.from_partition keyword arguments
    log_level: str = "warning"
    setup: Callable[[], None] | None = None  # run first in the child (e.g. register models)
    # Per-device broker URLs (each device's own credentials); others use ``mqtt_url``.
    device_urls: Mapping[str, str] | None = field(default=None, repr=False)
    log_format: str = "console"  # "json" when the parent role logs JSON lines

    def devices(self) -> list[str]:
        """Device ids of this shard, sorted."""
        return sorted({d.device for p in self.partitions.values() for d in p.devices})

    def describe(self) -> str:
        """``shard 2 (250 devices: h0-d2 .. h3-d97)``."""
        ids = self.devices()
        span = f"{ids[0]} .. {ids[-1]}" if ids else "none"
        return f"shard {self.index} ({len(ids)} devices: {span})"


@dataclass
class ShardReport:
    """What a shard says every REPORT_EVERY_S: totals so far, new spans, memory."""

    index: int
    totals: dict[str, Any]
    spans: list[tuple[int, int]]
    rss_bytes: int
    devices: int
    subscribed: int = 0  # devices whose MQTT subscription is live
    final: bool = False


@dataclass
class ShardedPopulation:
    """Devices in worker processes, run and stopped as one population."""

    plans: list[ShardPlan]
    reports: dict[int, ShardReport] = field(default_factory=dict)
    _spans: list[tuple[int, int]] = field(default_factory=list)
    peak_rss: dict[int, int] = field(default_factory=dict)

    @classmethod
    def plan(
        cls,
        partitions: Mapping[str, Partition],
        mqtt_url: str,
        storage_root: Path,
        *,
        workers: int = 0,
        log_level: str = "warning",
        setup: Callable[[], None] | None = None,
        device_urls: Mapping[str, str] | None = None,
        log_format: str = "console",
        **options: Any,
    ) -> ShardedPopulation:
        """Shard the partitions' devices; ``options`` go to ``Population.from_partition``.

        ``device_urls`` gives a device its own broker URL (its credentials)."""
        devices = len({d.device for p in partitions.values() for d in p.devices})
        count = shard_count(devices, workers)
        keys = sorted({(d.hospital, d.device) for p in partitions.values() for d in p.devices})
        place = {device: i for i, (_, device) in enumerate(keys)}
        plans = []
        for k, part in enumerate(split(partitions, count)):
            mine = {d.device for p in part.values() for d in p.devices}
            opts = {"storage": "memory", **options, "place": {d: place[d] for d in mine}}
            root = Path(storage_root) / f"shard{k}"
            urls = {d: device_urls[d] for d in mine if d in device_urls} if device_urls else None
            plans.append(
                ShardPlan(k, part, mqtt_url, root, opts, log_level, setup, urls, log_format)
            )
        return cls(plans)

    def __len__(self) -> int:
        return sum(len(p.devices()) for p in self.plans)

    def spans(self) -> list[tuple[int, int]]:
        """When some device was training, as reported so far."""
        return list(self._spans)

    def totals(self) -> dict[str, Any]:
        """Every shard's latest totals, summed."""
        out: dict[str, Any] = {}
        for report in self.reports.values():
            for key, value in report.totals.items():
                out[key] = out.get(key, 0) + value
        out["shards"] = len(self.plans)
        out["peak_rss_bytes"] = self.rss_bytes()
        return out

    def poisoned(self) -> int:
        """Poisoned updates the shards' attackers uploaded, as last reported."""
        return sum(int(r.totals.get("poisoned", 0)) for r in self.reports.values())

    def subscribed(self) -> int:
        """Devices whose subscription is live, as last reported."""
        return sum(r.subscribed for r in self.reports.values())

    def rss_bytes(self) -> int:
        """Peak resident memory of the shards, summed."""
        return sum(self.peak_rss.values())

    async def run(self, stop: asyncio.Event) -> None:
        """Run every shard until ``stop``; ShardDiedError if one exits on its own."""
        ctx = mp.get_context("spawn")  # never fork a process with threads and a loop
        halt, inbox = ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(
                target=_shard_main, args=(p, halt, inbox), name=f"devices-{p.index}", daemon=True
            )
            for p in self.plans
        ]
        for proc in procs:
            proc.start()
        log.info("population.sharded", shards=len(procs), devices=len(self))
        died: list[str] = []
        try:
            while not stop.is_set() and not died:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
                self._drain(inbox)
                died = [
                    f"{plan.describe()} exited with code {proc.exitcode}"
                    for plan, proc in zip(self.plans, procs, strict=True)
                    if proc.exitcode is not None
                ]
        finally:
            halt.set()
            await asyncio.to_thread(_join_all, procs, lambda: self._drain(inbox))
            self._drain(inbox)
            log.info("population.stopped", **self.totals())
        if died:
            for line in died:
                log.error("population.shard_died", shard=line)
            raise ShardDiedError("; ".join(died))

    def _drain(self, inbox: Any) -> None:
        while True:
            try:
                report: ShardReport = inbox.get_nowait()
            except (queue.Empty, OSError, EOFError):
                return
            self.reports[report.index] = report
            self._spans.extend(report.spans)
            self.peak_rss[report.index] = max(self.peak_rss.get(report.index, 0), report.rss_bytes)


def _join_all(procs: list[Any], drain: Callable[[], None]) -> None:
    """Give the shards STOP_GRACE_S to stop, then terminate, then kill what is left."""
    for action, grace in ((None, STOP_GRACE_S), ("terminate", 3.0), ("kill", 3.0)):
        for proc in procs:
            if action is not None and proc.is_alive():
                getattr(proc, action)()
        deadline = time.monotonic() + grace
        while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
            drain()  # a full queue would keep a child from exiting
            for proc in procs:
                proc.join(0.05)
        if not any(p.is_alive() for p in procs):
            return


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _shard_main(plan: ShardPlan, halt: Any, outbox: Any) -> None:
    """A worker process: its devices, each on its own MQTT session, until ``halt``."""
    from flproc.logs import prepare_process

    prepare_process(plan.log_format, plan.log_level)
    if plan.setup is not None:
        plan.setup()
    asyncio.run(_serve_shard(plan, halt, outbox))


async def _serve_shard(plan: ShardPlan, halt: Any, outbox: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from flbus.mqtt import MqttBus
    from flsim.population import Population
    from modelzoo.ort_compat import quiet_native_warnings

    quiet_native_warnings()
    if not plan.options.get("synthetic"):
        # Load ORT's training API now, before the devices say they listen: loaded
        # lazily, it made the first round's devices miss a short deadline.
        from modelzoo import ort_compat

        ort_compat.load_training_api()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C reaches the whole process group
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()
    with ThreadPoolExecutor(1, thread_name_prefix="train") as pool:
        population = Population.from_partition(
            plan.partitions,
            lambda device_id: MqttBus(
                (plan.device_urls or {}).get(device_id, plan.mqtt_url), client_id=device_id
            ),
            plan.storage_root,
            executor=pool,
            **plan.options,
        )
        sent = 0

        def report(final: bool = False) -> None:
            nonlocal sent
            spans = population.spans()
            outbox.put(
                ShardReport(
                    plan.index, population.totals(), spans[sent:], _rss_bytes(),
                    len(population), population.subscribed(), final,
                )
            )  # fmt: skip
            sent = len(spans)

        job = asyncio.create_task(population.run(stop))
        while not job.done():
            await asyncio.wait([job], timeout=REPORT_EVERY_S)
            if halt.is_set() or os.getppid() != parent:
                stop.set()
            report()
        report(final=True)
        job.result()
