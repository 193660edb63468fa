"""The coordinator's restart guarantee against a real Apache Kafka broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from flbus.kafka import KafkaBus
from tests.support.coordinator import restart_mid_round

pytestmark = pytest.mark.kafka


async def test_coordinator_kafka_restart_mid_round_uses_partials_sent_while_down(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    bus = KafkaBus(kafka_bootstrap, client_id="test-coordinator")
    await bus.start()
    try:
        await restart_mid_round(bus, tmp_path)
    finally:
        await bus.stop()
