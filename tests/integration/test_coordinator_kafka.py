"""The coordinator's restart guarantee against a real Apache Kafka broker.

The broker is fresh for this test: a coordinator's consumer group, plans and
versions are the state of one deployment, and a shared broker holds other
tests' (their model versions and committed offsets would be read back here).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flbus.kafka import KafkaBus
from flctl.brokers import BrokerError, LocalBrokers, free_port
from tests.conftest import _unavailable
from tests.support.coordinator import restart_mid_round

pytestmark = pytest.mark.kafka


@pytest.fixture
def fresh_kafka(tmp_path: Path) -> Iterator[str]:
    """A Kafka started for this one test."""
    local = LocalBrokers(
        free_port(), free_port(), tmp_path / "brokers", kafka_controller_port=free_port()
    )
    try:
        endpoints = local.up(timeout=120, mqtt=False, kafka=True)
    except BrokerError as exc:
        _unavailable(f"cannot start a fresh Kafka for the restart test: {exc}")
    try:
        assert endpoints.kafka_bootstrap is not None
        yield endpoints.kafka_bootstrap
    finally:
        local.down()


async def test_coordinator_kafka_restart_mid_round_uses_partials_sent_while_down(
    fresh_kafka: str, tmp_path: Path
) -> None:
    bus = KafkaBus(fresh_kafka, client_id="test-coordinator")
    await bus.start()
    try:
        await restart_mid_round(bus, tmp_path)
    finally:
        await bus.stop()
