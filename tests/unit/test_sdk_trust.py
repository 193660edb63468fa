"""A device adopts only coordinator-signed plans, versions and bundles (in-memory bus)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flbus.memory import MemoryPubSub
from flbus.port import PubSubBus
from tests.support.device import FakeClock
from tests.support.forged_control import (
    forged_plans_are_ignored,
    forged_versions_are_ignored,
    generated_artifacts,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_artifacts(tmp_path_factory)


@pytest.fixture
async def bus() -> AsyncIterator[MemoryPubSub]:
    bus = MemoryPubSub()
    await bus.start()
    yield bus
    await bus.stop()


async def test_device_ignores_forged_plans_and_counts_them(
    bus: MemoryPubSub, tmp_path: Path
) -> None:
    async def connect(_: str) -> PubSubBus:
        return bus

    await forged_plans_are_ignored(connect, tmp_path, FakeClock())


async def test_device_ignores_forged_versions_and_bundles_even_after_restart(
    bus: MemoryPubSub, tmp_path: Path, artifact_dir: Path
) -> None:
    async def connect(_: str) -> PubSubBus:
        return bus

    await forged_versions_are_ignored(connect, tmp_path, FakeClock(), artifact_dir)
