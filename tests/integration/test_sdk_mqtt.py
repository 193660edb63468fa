"""The device's round protocol over a real Mosquitto (MqttBus), the selector played by the test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from device_sdk.ledger import RoundLedger
from flbus.mqtt import MqttBus
from flproc.clock import wall_ms
from modelzoo import generate_artifacts
from schemas import ModelUpdate, encode
from schemas.chunking import decode_chunked
from schemas.topics import artifact_topic, model_chunk_topic, model_manifest_topic, plan_topic
from tests.support.device import (
    MODEL,
    bundle_of,
    make_device,
    plan,
    publish_model,
    running,
    selector_side,
    task,
    version_of,
)

pytestmark = pytest.mark.mqtt


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("art") / MODEL
    generate_artifacts(MODEL, out, optimizers=("sgd",))
    return out


@pytest.fixture
async def service_bus(mqtt_url: str, artifact_dir: Path) -> AsyncIterator[MqttBus]:
    """The selector's connection, with the model and a selecting plan retained."""
    bus = MqttBus(mqtt_url)
    await bus.start()
    await publish_model(bus, version_of(artifact_dir), bundle_of(artifact_dir))
    await bus.publish(plan_topic(MODEL), encode(plan(1)), retain=True)
    yield bus
    for topic in [plan_topic(MODEL), model_manifest_topic(MODEL)]:
        await bus.publish(topic, b"", retain=True)  # leave the shared broker clean
    for seq in range(1, 8):
        await bus.publish(model_chunk_topic(MODEL, seq), b"", retain=True)
        await bus.publish(artifact_topic(MODEL, 0, "bundle", seq - 1), b"", retain=True)
    await bus.stop()


async def test_device_over_mosquitto_uploads_once_per_round_across_restarts(
    mqtt_url: str, service_bus: MqttBus, tmp_path: Path
) -> None:
    # Prepare: a device id no other run used, so its persistent session starts empty.
    device_id = f"d{uuid.uuid4().hex[:10]}"
    the_task = replace(task(1, device=device_id), deadline_ms=wall_ms() + 60_000)
    async with selector_side(service_bus, device_id) as sel:
        # Execute: check in, get the task, upload; then a redelivered task.
        device_bus = MqttBus(mqtt_url, client_id=device_id)
        await device_bus.start()
        async with running(make_device(device_bus, tmp_path, wall_ms, device_id)):
            await sel.wait_for(lambda s: len(s.checkins) >= 1)
            await sel.answer(the_task, device_id)
            await sel.wait_for(lambda s: len(s.evals) >= 1)
            uploaded = len(sel.uploads)
            await sel.answer(the_task, device_id)
            await sel.drain(0.5)
        await device_bus.stop()
        # Execute: the app restarts on the same storage and the task arrives again.
        device_bus = MqttBus(mqtt_url, client_id=device_id)
        await device_bus.start()
        async with running(make_device(device_bus, tmp_path, wall_ms, device_id)):
            await sel.answer(the_task, device_id)
            await sel.drain(1.0)
        await device_bus.stop()
    # Assert: one chunked update with the token headers, never a second one.
    assert uploaded > 1 and len(sel.uploads) == uploaded
    assert all(r.header("token") == the_task.token.hex().encode() for r in sel.uploads)
    update = decode_chunked([r.value for r in sel.uploads])
    assert isinstance(update, ModelUpdate)
    assert (update.device_id, update.num_examples, update.token) == (device_id, 60, the_task.token)
    assert len(sel.checkins) == 1
    entries = RoundLedger(tmp_path / "rounds.sqlite").entries()
    assert [(e.round_id, e.outcome) for e in entries] == [(1, "uploaded")]
