"""The bus contracts, run against the in-memory buses."""

from collections.abc import AsyncIterator

import pytest

from flbus.memory import MemoryLog, MemoryPubSub
from tests.contracts.log import LogContract
from tests.contracts.pubsub import PubSubContract

pytestmark = pytest.mark.unit


class TestMemoryPubSub(PubSubContract):
    @pytest.fixture
    async def bus(self) -> AsyncIterator[MemoryPubSub]:
        bus = MemoryPubSub()
        await bus.start()
        yield bus
        await bus.stop()


class TestMemoryLog(LogContract):
    @pytest.fixture
    async def bus(self) -> AsyncIterator[MemoryLog]:
        bus = MemoryLog()
        await bus.start()
        yield bus
        await bus.stop()
