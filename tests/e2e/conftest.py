"""Where an end-to-end scenario runs: the in-memory buses, or fresh real brokers.

Every scenario runs on both. The real ones are a Mosquitto and a Kafka started
for the one test (a federation's topics, versions and consumer groups are the
state of one deployment, so scenarios do not share brokers). They come from the
same launcher as ``flctl brokers up``; when it cannot start them the test
skips with the reason, or fails under ``CI=true``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flctl.brokers import BrokerError, LocalBrokers, free_port
from tests.conftest import _unavailable


@dataclass(frozen=True)
class Plane:
    """The buses a scenario runs on, as demo options."""

    name: str
    brokers: str  # "memory" or "external"
    mqtt_url: str | None = None
    kafka_bootstrap: str | None = None


@pytest.fixture(params=["memory", "brokers"])
def plane(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Plane]:
    """In-memory buses, or a fresh local Mosquitto + Kafka for this test."""
    if request.param == "memory":
        yield Plane("memory", "memory")
        return
    request.node.add_marker(pytest.mark.mqtt)
    request.node.add_marker(pytest.mark.kafka)
    local = LocalBrokers(
        free_port(), free_port(), tmp_path / "brokers", kafka_controller_port=free_port()
    )
    try:
        endpoints = local.up(timeout=120)
    except BrokerError as exc:
        _unavailable(f"cannot start local brokers for an e2e scenario: {exc}")
    try:
        yield Plane("brokers", "external", endpoints.mqtt_url, endpoints.kafka_bootstrap)
    finally:
        local.down()
