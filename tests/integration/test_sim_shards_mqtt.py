"""A sharded device population on a real Mosquitto: stopped as one, a dead shard named."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from flsim.errors import ShardDiedError
from flsim.experiment import make_experiment
from flsim.shards import ShardedPopulation
from tests.support.signing import SIGNER


def _population(mqtt_url: str, tmp_path: Path) -> ShardedPopulation:
    partitions = make_experiment(
        ["digits_mlp"], hospitals=2, devices_per_hospital=3, alpha=0.5, seed=0
    ).partitions
    return ShardedPopulation.plan(
        partitions, mqtt_url, tmp_path, workers=2, coordinator_key=SIGNER.trusted()
    )


async def _until_both_report(population: ShardedPopulation, job: asyncio.Task[None]) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + 60
    while len(population.reports) < 2 and not job.done() and loop.time() < end:
        await asyncio.sleep(0.1)
    assert len(population.reports) == 2, "the shards never reported"


async def test_sharded_population_stops_every_shard_on_stop(mqtt_url: str, tmp_path: Path) -> None:
    population = _population(mqtt_url, tmp_path)
    stop = asyncio.Event()
    job = asyncio.create_task(population.run(stop))
    await _until_both_report(population, job)
    # Execute
    stop.set()
    await asyncio.wait_for(job, 30)
    # Assert: both shards sent their final report, holding 3 devices each.
    assert sorted(r.devices for r in population.reports.values()) == [3, 3]
    assert all(r.final for r in population.reports.values())
    assert population.rss_bytes() > 0


async def test_sharded_population_names_a_shard_that_died(mqtt_url: str, tmp_path: Path) -> None:
    population = _population(mqtt_url, tmp_path)
    stop = asyncio.Event()
    job = asyncio.create_task(population.run(stop))
    await _until_both_report(population, job)
    # Execute: shard 1 is killed from outside.
    victim = next(p for p in multiprocessing.active_children() if p.name == "devices-1")
    os.kill(victim.pid or 0, signal.SIGKILL)
    # Assert: the population ends by itself, naming shard 1 and how it ended.
    with pytest.raises(ShardDiedError, match=r"shard 1 \(3 devices: .*\) exited with code -9"):
        await asyncio.wait_for(job, 30)
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("devices-")]
