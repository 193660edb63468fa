"""Resident memory of a sharded device population, per device, on a real Mosquitto.

Two populations of ``small`` and ``large`` devices on the same number of
worker processes, each run until every device listens for plans: the slope
of their summed peak RSS is the cost of one device, the intercept the cost of
a worker process (Python, numpy, ONNX Runtime's import, the data set).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from pathlib import Path

from bench.rounds import hospitals_for
from flcore.signing import Signer
from flsim.experiment import make_experiment
from flsim.shards import MAX_DEVICES_PER_SHARD, ShardedPopulation


@dataclass(frozen=True)
class PopulationRss:
    """Summed peak RSS of the shards holding ``devices`` devices, and how long they took."""

    devices: int
    shards: int
    rss_bytes: int
    ready_s: float


async def measure(mqtt_url: str, devices: int, workers: int, root: Path) -> PopulationRss:
    """Start ``devices`` devices on ``workers`` processes, wait until all listen, stop."""
    h = hospitals_for(devices)
    partitions = make_experiment(
        ["digits_mlp"], hospitals=h, devices_per_hospital=devices // h, alpha=0.5, seed=0
    ).partitions
    # Devices pin a coordinator key; none publishes here, any key does.
    key = Signer.from_seed(b"bench-population".ljust(32, b"\0")).trusted()
    population = ShardedPopulation.plan(
        partitions, mqtt_url, root, workers=workers, coordinator_key=key
    )
    stop = asyncio.Event()
    began = time.perf_counter()
    job = asyncio.create_task(population.run(stop))
    while population.subscribed() < devices and not job.done():
        await asyncio.sleep(0.2)
    ready = time.perf_counter() - began
    await asyncio.sleep(1.0)  # one more report at rest
    stop.set()
    await job
    return PopulationRss(devices, len(population.plans), population.rss_bytes(), ready)


def per_device(
    mqtt_url: str, small: int, large: int, root: Path
) -> tuple[float, float, list[PopulationRss]]:
    """(MB per device, MB per worker process, both runs) from ``small`` and ``large`` devices."""
    workers = math.ceil(large / MAX_DEVICES_PER_SHARD)
    runs = [asyncio.run(measure(mqtt_url, n, workers, root / f"pop{n}")) for n in (small, large)]
    slope = (runs[1].rss_bytes - runs[0].rss_bytes) / (large - small)
    base = (runs[0].rss_bytes - slope * small) / workers
    return slope / 1e6, base / 1e6, runs
