"""The selector over real Mosquitto and Kafka: check-in -> task, upload -> updates topic."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import pytest

from flbus.kafka import KafkaBus
from flbus.mqtt import MqttBus
from flbus.port import Record, Subscription
from flcore.tokens import verify_token
from flproc.clock import wall_ms
from schemas import (
    CheckIn,
    Chunk,
    ModelUpdate,
    ModelVersion,
    RoundPlan,
    Task,
    Tensors,
    decode,
    encode,
)
from schemas.chunking import encode_chunked
from schemas.headers import upload_headers
from schemas.topics import (
    KAFKA_MODEL_VERSIONS,
    KAFKA_ROUND_PLANS,
    checkin_topic,
    model_manifest_topic,
    plan_topic,
    task_topic,
    updates_topic,
    upload_topic,
)
from services.common.streams import publish_log_chunked
from services.selector.app import BROADCASTS, Selector, build
from services.selector.config import SelectorConfig

pytestmark = [pytest.mark.mqtt, pytest.mark.kafka]

SECRET = b"selector-integration-secret"


def _plan(model: str, hospital: str) -> RoundPlan:
    now = wall_ms()
    return RoundPlan(
        model, 1, 0, "selecting", 1, 0, 32, 0.1, 0.0, 0.0, (hospital,), (2,),
        1.0, 1.3, 0.5, now, now + 120_000, "",
    )  # fmt: skip


@asynccontextmanager
async def _selector(
    mqtt_url: str, kafka_bootstrap: str, group: str, hospital: str
) -> AsyncIterator[Selector]:
    config = SelectorConfig(token_secret=SECRET, share_group=group, hospitals=(hospital,))
    async with MqttBus(mqtt_url) as pubsub, KafkaBus(kafka_bootstrap) as log_bus:
        selector = build(config, pubsub, log_bus, wall_ms)
        stop = asyncio.Event()
        task = asyncio.create_task(selector.run(stop))
        try:
            async with asyncio.timeout(60):
                await selector.ready.wait()
            yield selector
        finally:
            stop.set()
            async with asyncio.timeout(30):
                await task


async def test_selector_round_trip_over_real_brokers(mqtt_url: str, kafka_bootstrap: str) -> None:
    tag = uuid.uuid4().hex[:8]
    model, hospital, device = f"m{tag}", f"h{tag}", "d1"
    plan = _plan(model, hospital)
    async with KafkaBus(kafka_bootstrap) as kafka, MqttBus(mqtt_url) as phone:
        await kafka.publish(KAFKA_ROUND_PLANS, encode(plan), key=model.encode())
        async with _selector(mqtt_url, kafka_bootstrap, f"sel{tag}", hospital) as selector:
            async with asyncio.timeout(30):
                while model not in selector.plans.plans:
                    await asyncio.sleep(0.05)

            # Check-in -> Task, and the plan is retained for late subscribers.
            answers = await phone.subscribe([task_topic(hospital, device)])
            checkin = CheckIn(
                device, hospital, (model,), "1.19.2", "0.1", True, True, True, 90.0, 512, wall_ms()
            )
            await phone.publish(checkin_topic(hospital, device), encode(checkin))
            record = await answers.get(timeout=30)
            assert record is not None
            task = decode(record.value, Task)
            rejection = verify_token(
                task.token,
                model=model,
                round_id=1,
                base_version=0,
                device_id=device,
                hospital_id=hospital,
                now_ms=wall_ms(),
                secret=SECRET,
            )
            assert rejection is None
            plans = await phone.subscribe([plan_topic(model)])
            retained = await plans.get(timeout=30)
            assert retained is not None and retained.retained
            assert decode(retained.value, RoundPlan) == plan

            # Upload chunks -> fl.v1.updates.<hospital>, bytes, key and headers unchanged.
            tensors = Tensors.from_dict({"w": np.ones(3000, dtype=np.float32)})
            update = ModelUpdate(
                model, 1, 0, device, hospital, 10, 0.3, 1.0, task.token, "u1", tensors
            )
            chunks = encode_chunked(update, f"{hospital}-{device}-1", max_chunk_bytes=4096)
            headers = upload_headers(task.token, model, 1, 0)
            updates = await kafka.subscribe([updates_topic(hospital)], start="earliest")
            for data in chunks:
                await phone.publish(upload_topic(hospital, device), data, headers=headers)
            got: list[Record] = []
            while len(got) < len(chunks):
                rec = await updates.get(timeout=30)
                assert rec is not None, f"only {len(got)} of {len(chunks)} chunks bridged"
                got.append(rec)
            assert sorted(r.value for r in got) == sorted(chunks)
            assert all(r.key == device.encode() and r.headers == headers for r in got)
            await updates.close()


async def test_selector_forged_upload_not_bridged_over_real_brokers(
    mqtt_url: str, kafka_bootstrap: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    hospital, device = f"h{tag}", "d1"
    async with (
        KafkaBus(kafka_bootstrap) as kafka,
        MqttBus(mqtt_url) as phone,
        _selector(mqtt_url, kafka_bootstrap, f"sel{tag}", hospital) as selector,
    ):
        forged = upload_headers(b"\x01" + bytes(40), "digits", 1, 0)
        tensors = Tensors.from_dict({"w": np.ones(10, dtype=np.float32)})
        update = ModelUpdate("digits", 1, 0, device, hospital, 1, 0.1, 0.1, b"x", "u", tensors)
        [data] = encode_chunked(update, "s1")
        await phone.publish(upload_topic(hospital, device), data, headers=forged)
        async with asyncio.timeout(30):
            while selector.stats["update.rejected:bad_token"] < 1:
                await asyncio.sleep(0.05)
        updates = await kafka.subscribe([updates_topic(hospital)], start="earliest")
        assert await updates.get(timeout=2) is None
        await updates.close()


async def test_two_replicas_put_one_copy_of_a_version_through_the_broker(
    mqtt_url: str, kafka_bootstrap: str
) -> None:
    """Versions are read in one consumer group: one replica forwards, the other takes over."""
    tag = uuid.uuid4().hex[:8]
    model, hospital = f"m{tag}", f"h{tag}"

    def version(v: int) -> ModelVersion:
        tensors = Tensors.from_dict({"w": np.full(300_000, v, dtype=np.float32)})
        return ModelVersion(model, v, v - 1, v - 1, wall_ms(), (), (), "art1", tensors)

    async def copies(sub: Subscription, want: str, settle: float = 3.0) -> list[str]:
        """Stream ids of the manifests received, until ``want`` came and then none for a while."""
        got: list[str] = []
        async with asyncio.timeout(60):
            while (record := await sub.get(timeout=settle)) is not None or want not in got:
                if record is not None and record.topic == model_manifest_topic(model):
                    got.append(decode(record.value, Chunk).stream_id)
        return got

    async with KafkaBus(kafka_bootstrap) as kafka, MqttBus(mqtt_url) as phone:
        stacks = [contextlib.AsyncExitStack() for _ in range(2)]
        try:
            replicas = [
                await stack.enter_async_context(
                    _selector(mqtt_url, kafka_bootstrap, f"sel{tag}", hospital)
                )
                for stack in stacks
            ]
            # The group settled: both replicas joined, each forwards one of the two
            # single-partition topics (a rebalance hands a topic over and re-reads it).
            async with asyncio.timeout(60):
                while sorted(t for s in replicas for t in s.forwarding) != sorted(BROADCASTS) or (
                    not all(s.forwarding for s in replicas)
                ):
                    await asyncio.sleep(0.1)
            seen = await phone.subscribe([f"fl/v1/models/{model}/#"])
            await publish_log_chunked(kafka, KAFKA_MODEL_VERSIONS, version(1),
                                      stream_id=f"{tag}-v1", key=model.encode())  # fmt: skip
            assert await copies(seen, f"{tag}-v1") == [f"{tag}-v1"]  # not one per replica
            forwarding = next(
                i for i, s in enumerate(replicas) if KAFKA_MODEL_VERSIONS in s.forwarding
            )
            other = replicas[1 - forwarding]

            await stacks[forwarding].aclose()  # leaves the group: the other re-reads the topic
            async with asyncio.timeout(60):
                while other.forwarding != set(BROADCASTS):
                    await asyncio.sleep(0.1)
            await publish_log_chunked(kafka, KAFKA_MODEL_VERSIONS, version(2),
                                      stream_id=f"{tag}-v2", key=model.encode())  # fmt: skip
            got = await copies(seen, f"{tag}-v2")
            assert got[-1] == f"{tag}-v2" and got.count(f"{tag}-v2") == 1, got
            assert set(got) <= {f"{tag}-v1", f"{tag}-v2"}, got  # v1 again: the take-over
        finally:
            for stack in stacks:
                await stack.aclose()
