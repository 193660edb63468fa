"""Forged retained plans and model versions on a real Mosquitto: ignored and counted."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flbus.mqtt import MqttBus
from flbus.port import PubSubBus
from flproc.clock import wall_ms
from tests.support.forged_control import (
    Connect,
    forged_plans_are_ignored,
    forged_versions_are_ignored,
    generated_artifacts,
)

pytestmark = pytest.mark.mqtt


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_artifacts(tmp_path_factory)


@pytest.fixture
async def connect(mqtt_url: str) -> AsyncIterator[Connect]:
    """Started MqttBus connections, each with a client id no other run used."""
    buses: list[MqttBus] = []

    async def open_bus(name: str) -> PubSubBus:
        bus = MqttBus(mqtt_url, client_id=f"{name}-{uuid.uuid4().hex[:10]}")
        await bus.start()
        buses.append(bus)
        return bus

    yield open_bus
    for bus in buses:
        await bus.stop()


async def test_device_over_mosquitto_ignores_forged_retained_plans(
    connect: Connect, tmp_path: Path
) -> None:
    await forged_plans_are_ignored(connect, tmp_path, wall_ms)


async def test_device_over_mosquitto_ignores_forged_retained_versions(
    connect: Connect, tmp_path: Path, artifact_dir: Path
) -> None:
    await forged_versions_are_ignored(connect, tmp_path, wall_ms, artifact_dir)
