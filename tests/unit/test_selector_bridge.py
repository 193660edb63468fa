"""Selector bridge: plans, model versions and artifact bundles republished retained."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from flbus.memory import MemoryLog, MemoryPubSub
from flbus.port import Record
from schemas import Chunk, ModelVersion, RoundPlan, Tensors, decode
from schemas.artifacts import ArtifactBundle
from schemas.chunking import decode_chunked
from schemas.topics import (
    KAFKA_ARTIFACTS,
    KAFKA_MODEL_VERSIONS,
    model_manifest_topic,
    plan_topic,
)
from services.common.streams import publish_log_chunked
from services.selector.app import build
from tests.unit.test_selector_checkin import CONFIG, NOW, Clock, plan, running, until

pytestmark = pytest.mark.unit

SMALL = 2048  # bytes per chunk, so a version spans several chunks


def version(v: int, size: int = 1500) -> ModelVersion:
    """Version ``v`` of digits whose weights all equal ``v``."""
    tensors = Tensors.from_dict({"w": np.full(size, v, dtype=np.float32)})
    return ModelVersion("digits", v, v - 1, v - 1, NOW, (), (), "art1", tensors)


async def retained(pubsub: MemoryPubSub, topic_filter: str) -> dict[str, Record]:
    """What a subscriber arriving now gets: the retained message of each matching topic."""
    sub = await pubsub.subscribe([topic_filter])
    out = {}
    while (record := await sub.get(timeout=0.05)) is not None:
        assert record.retained
        out[record.topic] = record
    await sub.close()
    return out


def current_version(found: dict[str, Record]) -> ModelVersion:
    """Reassemble the retained current version the way a device does."""
    manifest = found[model_manifest_topic("digits")]
    chunks = [r.value for t, r in found.items() if "/chunks/" in t or t == manifest.topic]
    return decode_chunked(chunks, ModelVersion)


async def test_selector_plan_republished_retained_for_late_subscribers() -> None:
    async with running(plans=(plan(),)) as h:
        await h.add_plan(plan(round_id=4))
        found = await retained(h.pubsub, plan_topic("digits"))
        assert decode(found[plan_topic("digits")].value, RoundPlan).round_id == 4


async def test_selector_model_version_republished_retained_and_only_newer() -> None:
    async with running() as h:
        await publish_log_chunked(
            h.log, KAFKA_MODEL_VERSIONS, version(1), stream_id="v1", key=b"digits",
            max_chunk_bytes=SMALL,
        )  # fmt: skip
        await until(lambda: h.selectors[0].stats["model_chunk"] > 0)
        found = await retained(h.pubsub, "fl/v1/models/digits/#")
        assert current_version(found).version == 1
        first = len(found)
        assert first > 2  # manifest plus several chunk topics
        await publish_log_chunked(
            h.log, KAFKA_MODEL_VERSIONS, version(0), stream_id="v0", key=b"digits",
            max_chunk_bytes=SMALL,
        )  # fmt: skip
        await publish_log_chunked(
            h.log, KAFKA_MODEL_VERSIONS, version(2, size=300), stream_id="v2", key=b"digits",
            max_chunk_bytes=SMALL,
        )  # fmt: skip
        await until(lambda: h.selectors[0].stats["model_chunk_clear"] > 0)
        found = await retained(h.pubsub, "fl/v1/models/digits/#")
        current = current_version(found)
        assert current.version == 2 and float(current.tensors.flat[0]) == 2.0
        assert len(found) == decode_chunked_total(found)  # stale chunk topics were cleared
        assert h.selectors[0].stats["model_chunk"] == first + len(found)  # v0 never forwarded


def decode_chunked_total(found: dict[str, Record]) -> int:
    """How many chunks the retained manifest says the version has."""
    return decode(found[model_manifest_topic("digits")].value, Chunk).total


async def test_selector_catch_up_forwards_only_the_latest_version() -> None:
    sizes = {0: 1500, 1: 1500, 2: 3000}

    async def seed(log: MemoryLog) -> None:
        for v, size in sizes.items():
            await publish_log_chunked(
                log, KAFKA_MODEL_VERSIONS, version(v, size), stream_id=f"v{v}", key=b"digits",
                max_chunk_bytes=SMALL,
            )  # fmt: skip

    async with running(seed=seed) as h:
        found = await retained(h.pubsub, "fl/v1/models/digits/#")
        assert current_version(found).version == 2
        assert h.selectors[0].stats["model_chunk"] == decode_chunked_total(found) == len(found)


async def test_selector_artifact_bundle_republished_retained() -> None:
    bundle = ArtifactBundle.pack("digits", "abc", {"training_model.onnx": b"x" * 5000})
    async with running() as h:
        await publish_log_chunked(
            h.log, KAFKA_ARTIFACTS, bundle, stream_id="art-abc", key=b"digits",
            max_chunk_bytes=SMALL,
        )  # fmt: skip
        await until(lambda: h.selectors[0].stats["artifact_chunk"] > 0)
        found = await retained(h.pubsub, "fl/v1/models/digits/artifacts/#")
        total = h.selectors[0].stats["artifact_chunk"]
        assert total > 1
        assert set(found) == {f"fl/v1/models/digits/artifacts/0/bundle/{i}" for i in range(total)}
        got = decode_chunked([r.value for r in found.values()], ArtifactBundle)
        assert got.files() == bundle.files()


async def test_replicas_forward_each_version_once_and_hand_over_when_one_stops() -> None:
    """Two replicas put one copy of a version through the broker, not two; when the
    forwarding replica stops, the other re-reads the topic and forwards what follows."""
    clock = Clock()
    pubsub, log = MemoryPubSub(), MemoryLog(clock=clock)
    await pubsub.start()
    await log.start()
    seen = await pubsub.subscribe(["fl/v1/models/digits/#"])  # a device's view: every copy
    stops = [asyncio.Event(), asyncio.Event()]
    replicas = [build(CONFIG, pubsub, log, clock) for _ in stops]
    tasks = [asyncio.create_task(s.run(stop)) for s, stop in zip(replicas, stops, strict=True)]

    async def publish(v: int) -> None:
        await publish_log_chunked(
            log, KAFKA_MODEL_VERSIONS, version(v), stream_id=f"v{v}", key=b"digits",
            max_chunk_bytes=SMALL,
        )  # fmt: skip

    async def manifests() -> list[str]:
        """Stream ids of the version manifests devices received since the last call."""
        got = []
        while (record := await seen.get(timeout=0.2)) is not None:
            if record.topic == model_manifest_topic("digits"):
                got.append(decode(record.value, Chunk).stream_id)
        return got

    try:
        await until(lambda: all(s.ready.is_set() for s in replicas))
        await publish(1)
        assert await manifests() == ["v1"]  # one copy, whichever replica holds the topic
        forwarder = next(i for i, s in enumerate(replicas) if s.stats["model_chunk"])
        other = 1 - forwarder
        assert replicas[other].stats["model_chunk"] == 0
        stops[forwarder].set()
        await tasks[forwarder]
        await until(lambda: replicas[other].stats["model_chunk"] > 0)  # took over: re-read v1
        assert await manifests() == ["v1"]
        await publish(2)
        assert await manifests() == ["v2"]
        found = await retained(pubsub, "fl/v1/models/digits/#")
        assert current_version(found).version == 2
    finally:
        for stop in stops:
            stop.set()
        async with asyncio.timeout(5):
            await asyncio.gather(*tasks)
        await seen.close()
        await pubsub.stop()
        await log.stop()
