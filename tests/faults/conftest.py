"""Fault tests: a fresh federation of role processes on fresh local brokers per test.

Brokers come from the launcher behind ``flctl brokers up`` (a Kafka and a
Mosquitto this test may SIGKILL and restart on the same port and data
directory); when they cannot start, the test skips with the reason, or fails
under ``CI=true``. Each test records how long each fault took to recover
from (kill to the next announced model version); the numbers are printed in
the terminal summary.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flctl.brokers import BrokerError, BrokerStartFailed, LocalBrokers, PortInUse, free_port
from tests.conftest import _unavailable
from tests.faults.harness import Federation

RECOVERIES: list[tuple[str, float]] = []
"""(fault, seconds from the kill to the next completed round), filled by the tests."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test here is a fault test on real brokers, bounded in time."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            for marker in ("faults", "mqtt", "kafka"):
                item.add_marker(getattr(pytest.mark, marker))
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(240))


@pytest.fixture
def broker_host() -> str:
    """The address the brokers bind and advertise (a test module may override it)."""
    return "127.0.0.1"


@pytest.fixture
def federation(tmp_path: Path, broker_host: str) -> Iterator[Federation]:
    """Fresh Mosquitto + Kafka for this test and a federation to start on them."""
    # Free ports, not fixed ones: other sessions on this machine start brokers too, and a
    # port taken between the check and the bind fails one start; the retry gets others.
    for attempt in (1, 2):
        brokers = LocalBrokers(
            free_port(),
            free_port(),
            tmp_path / f"brokers{attempt}",
            kafka_controller_port=free_port(),
            host=broker_host,
        )
        try:
            endpoints = brokers.up(timeout=120)
            break
        except (PortInUse, BrokerStartFailed) as exc:
            if attempt == 2:
                _unavailable(f"cannot start local brokers for a fault test: {exc}")
        except BrokerError as exc:
            _unavailable(f"cannot start local brokers for a fault test: {exc}")
    assert endpoints.mqtt_url is not None and endpoints.kafka_bootstrap is not None
    fed = Federation(tmp_path / "roles", brokers, endpoints.mqtt_url, endpoints.kafka_bootstrap)
    try:
        yield fed
    finally:
        fed.stop()
        brokers.down(grace=5)


def record_recovery(fault: str, seconds: float) -> None:
    """Note how long a fault took to recover from (shown in the terminal summary)."""
    RECOVERIES.append((fault, seconds))
    print(f"[faults] {fault}: recovered in {seconds:.1f} s")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the recovery time of every fault tried in this session."""
    if not RECOVERIES:
        return
    terminalreporter.section("fault recovery (kill -> next completed round)")
    for fault, seconds in RECOVERIES:
        terminalreporter.write_line(f"{fault:<48} {seconds:6.1f} s")
