"""The device population simulator on the in-memory bus, admitting every check-in by hand."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flbus.memory import MemoryPubSub
from flproc.clock import wall_ms
from flsim.experiment import make_experiment
from flsim.population import Population, SimClock, _conditions, shared_decode
from modelzoo import generate_artifacts
from schemas import CheckIn, ModelUpdate, RetryAfter, decode, encode
from schemas.chunking import ChunkedReceiver
from schemas.topics import MQTT_ROOT, plan_topic
from tests.support.device import MODEL, bundle_of, plan, publish_model, version_of
from tests.support.device import task as make_task
from tests.support.signing import KEYS, SIGNER, signed

pytestmark = pytest.mark.unit


def test_sim_clock_compresses_a_week_into_the_given_seconds() -> None:
    wall = [1_000_000]
    clock = SimClock.compressed(7.0, wall=lambda: wall[0])
    start = clock.now()
    wall[0] += 1_000  # one real second = one simulated day
    assert clock.now() - start == timedelta(days=1)


def test_nights_availability_docks_some_nights_not_days() -> None:
    provider = _conditions("nights", seed=3)
    nights = [datetime(2026, 1, d, 23, 0, tzinfo=UTC) for d in range(1, 29)]
    docked = sum(provider.conditions(t).charging for t in nights)
    noon = [provider.conditions(t.replace(hour=12)).charging for t in nights]
    assert 4 <= docked <= 24 and not any(noon)


async def test_population_devices_decode_a_plan_once_between_them(tmp_path: Path) -> None:
    # Prepare: 2 hospitals x 3 devices on one bus, an empty decode cache.
    shared_decode.cache_clear()
    bus = MemoryPubSub()
    await bus.start()
    partitions = make_experiment(
        [MODEL], hospitals=2, devices_per_hospital=3, alpha=0.5, seed=0
    ).partitions
    sub = await bus.subscribe([f"{MQTT_ROOT}/+/+/checkin"])
    population = Population.from_partition(
        partitions, lambda _: bus, tmp_path / "devices", coordinator_key=KEYS, seed=0,
        manage_buses=False, poll_interval_s=0.02,
    )  # fmt: skip
    stop = asyncio.Event()
    job = asyncio.create_task(population.run(stop))
    both = signed(replace(plan(1), hospitals=("h0", "h1"), targets=(3, 3)))
    await bus.publish(plan_topic(MODEL), encode(both), retain=True)
    # Execute: wait until every device checked in on that plan.
    checked_in: set[str] = set()
    loop = asyncio.get_running_loop()
    end = loop.time() + 20
    while len(checked_in) < 6 and loop.time() < end:
        record = await sub.get(0.1)
        if record is not None:
            checked_in.add(decode(record.value).device_id)
    stop.set()
    await job
    await bus.stop()
    # Assert: six devices acted on the plan, decoded once and then served from the cache.
    info = shared_decode.cache_info()
    assert len(checked_in) == 6
    assert (info.misses, info.hits) == (1, 5)


async def test_population_devices_told_to_retry_check_in_again_when_due(tmp_path: Path) -> None:
    # Prepare: 1 hospital x 2 devices, each check-in answered "come back in 0.3 s".
    bus = MemoryPubSub()
    await bus.start()
    partitions = make_experiment(
        [MODEL], hospitals=1, devices_per_hospital=2, alpha=0.5, seed=0
    ).partitions
    sub = await bus.subscribe([f"{MQTT_ROOT}/+/+/checkin"])
    population = Population.from_partition(
        partitions, lambda _: bus, tmp_path / "devices", coordinator_key=KEYS, seed=0,
        manage_buses=False, poll_interval_s=0.05, storage="memory",
    )  # fmt: skip
    stop = asyncio.Event()
    job = asyncio.create_task(population.run(stop))
    one = signed(replace(plan(1), hospitals=("h0",), targets=(2,)))
    await bus.publish(plan_topic(MODEL), encode(one), retain=True)
    # Execute: defer every check-in once; count check-ins per device.
    counts: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    end = loop.time() + 20
    while min(counts.values(), default=0) < 2 and loop.time() < end:
        record = await sub.get(0.1)
        if record is None:
            continue
        c = decode(record.value)
        counts[c.device_id] = counts.get(c.device_id, 0) + 1
        if counts[c.device_id] == 1:
            later = RetryAfter(c.device_id, c.hospital_id, MODEL, wall_ms() + 300, "paced")
            await bus.publish(f"{MQTT_ROOT}/{c.hospital_id}/{c.device_id}/task", encode(later))
    stop.set()
    await job
    await bus.stop()
    # Assert: both devices came back on their own (the population's tick), no message needed.
    assert len(counts) == 2 and min(counts.values()) >= 2


async def test_population_devices_decode_digest_and_install_a_model_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the model published (bundle + version chunks), 2 x 3 devices, a digest counter.
    import flcore.signing as signing

    art = tmp_path / "art" / MODEL
    generate_artifacts(MODEL, art, optimizers=("sgd",))
    version, bundle = version_of(art), bundle_of(art)
    digests: list[str] = []
    plain = signing.digest

    def counted(msg: Any) -> bytes:
        digests.append(type(msg).__name__)
        return plain(msg)

    monkeypatch.setattr(signing, "digest", counted)
    bus = MemoryPubSub()
    await bus.start()
    await publish_model(bus, version, bundle)
    partitions = make_experiment(
        [MODEL], hospitals=2, devices_per_hospital=3, alpha=0.5, seed=0
    ).partitions
    population = Population.from_partition(
        partitions, lambda _: bus, tmp_path / "devices", coordinator_key=SIGNER.trusted(),
        seed=0, manage_buses=False, storage="memory",
    )  # fmt: skip
    stop = asyncio.Event()
    job = asyncio.create_task(population.run(stop))
    # Execute: wait until every device holds the version.
    loop = asyncio.get_running_loop()
    end = loop.time() + 20

    def held() -> int:
        return sum(d._state(MODEL).version is not None for d in population.devices)

    while held() < 6 and loop.time() < end:
        await asyncio.sleep(0.05)
    stop.set()
    await job
    await bus.stop()
    # Assert: six devices hold the one decoded version, digested once (not six times).
    assert held() == 6
    assert len({id(d._state(MODEL).version) for d in population.devices}) == 1
    assert digests.count("ModelVersion") == 1 and digests.count("ArtifactBundle") == 1
    # ... and the bundle was written to disk once for the six of them.
    assert len(list((tmp_path / "devices").rglob(bundle.digest))) == 1


async def test_population_devices_each_upload_their_shard_once(tmp_path: Path) -> None:
    # Prepare: 2 hospitals x 3 devices, the model published, round 1 selecting.
    art = tmp_path / "art" / MODEL
    generate_artifacts(MODEL, art, optimizers=("sgd",))
    bus = MemoryPubSub()
    await bus.start()
    await publish_model(bus, version_of(art), bundle_of(art))
    partitions = make_experiment(
        [MODEL], hospitals=2, devices_per_hospital=3, alpha=0.5, seed=0
    ).partitions
    sub = await bus.subscribe([f"{MQTT_ROOT}/+/+/checkin", f"{MQTT_ROOT}/+/+/upload"])
    with ThreadPoolExecutor(1) as pool:
        population = Population.from_partition(
            partitions, lambda _: bus, tmp_path / "devices", coordinator_key=KEYS, seed=0,
            executor=pool, manage_buses=False, poll_interval_s=0.02,
        )  # fmt: skip
        stop = asyncio.Event()
        job = asyncio.create_task(population.run(stop))
        both = signed(replace(plan(1), hospitals=("h0", "h1"), targets=(3, 3)))
        await bus.publish(plan_topic(MODEL), encode(both), retain=True)
        # Execute: admit every check-in, collect the updates.
        rx, updates = ChunkedReceiver(), {}
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        while len(updates) < 6 and loop.time() < end:
            record = await sub.get(0.1)
            if record is None:
                continue
            if record.topic.endswith("/checkin"):
                c = decode(record.value)
                assert isinstance(c, CheckIn)
                t = replace(make_task(1, device=c.device_id), hospital_id=c.hospital_id)
                await bus.publish(f"{MQTT_ROOT}/{c.hospital_id}/{c.device_id}/task", encode(t))
            elif (msg := rx.add(record.value, 0)) is not None:
                updates[msg.device_id] = msg
        stop.set()
        await job
    await bus.stop()
    # Assert: every device trained on exactly its own rows.
    rows = {d.device: len(d.train) for d in partitions[MODEL].devices}
    assert {k: u.num_examples for k, u in updates.items()} == rows
    assert all(isinstance(u, ModelUpdate) for u in updates.values())
    assert population.totals()["uploads"] == 6
