"""Real-broker fixtures: ``mqtt_url`` and ``kafka_bootstrap`` (session scope, lazy).

Where a broker comes from, first match wins:

1. ``FL_MQTT_URL`` / ``FL_KAFKA_BOOTSTRAP`` set: use it, start nothing.
2. A Docker engine answers: a testcontainers container (eclipse-mosquitto:2,
   apache/kafka), removed at session end.
3. Otherwise the launcher behind ``flctl brokers up`` starts local processes on
   free ports with data under pytest's tmp dir, stopped at session end.

When none works the test is skipped with the reason, except under ``CI=true``,
where it fails with the reason: CI never passes by skipping the real brokers.

Only a test that asks for a fixture starts that broker, and such a test is
given the matching ``mqtt`` / ``kafka`` marker if it lacks it, so
``-m "not kafka and not mqtt"`` selects exactly the tests that start nothing.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flctl.brokers import (
    BrokerError,
    BrokerStartFailed,
    LocalBrokers,
    PortInUse,
    free_port,
    kafka_answers,
    mqtt_answers,
)

KAFKA_IMAGE = "apache/kafka:4.1.0"
MOSQUITTO_IMAGE = "eclipse-mosquitto:2"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that reaches a broker fixture, directly or through another fixture."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        for fixture, marker in (("mqtt_url", "mqtt"), ("kafka_bootstrap", "kafka")):
            if fixture in names and item.get_closest_marker(marker) is None:
                item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(autouse=True)
def _structlog_config_restored() -> Iterator[None]:
    """Undo what a command's entry point does to structlog's global configuration.

    ``flctl`` commands configure structlog for the process (level filter, output
    to the then-current stderr); left in place, that silences ``capture_logs``
    in later tests and writes to a stream pytest has closed.
    """
    import structlog

    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and no broker could be had: {reason}", pytrace=False)
    pytest.skip(reason)


def docker_engine_answers(timeout: float = 1.0) -> bool:
    """True when a Docker engine answers ``/_ping`` within ``timeout`` seconds."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    request = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"
    try:
        if host.startswith("unix://"):
            path = host.removeprefix("unix://")
            if not os.path.exists(path):
                return False
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(timeout)
            sock.connect(path)
        elif host.startswith("tcp://"):
            addr, _, port = host.removeprefix("tcp://").rpartition(":")
            sock = socket.create_connection((addr, int(port)), timeout=timeout)
        else:
            return False
        with sock:
            sock.sendall(request)
            return b" 200 " in sock.recv(64)
    except (OSError, ValueError):
        return False


class _Brokers:
    """Starts brokers on demand for one session and tears down what it started."""

    def __init__(self, root: Path, say: Callable[[str], None]) -> None:
        self.root, self.say = root, say
        self._cleanups: list[Callable[[], Any]] = []
        self._docker: bool | None = None

    def docker(self) -> bool:
        if self._docker is None:
            self._docker = docker_engine_answers()
        return self._docker

    def mqtt(self) -> str:
        if self.docker():
            return self._mqtt_container()
        return self._local(
            lambda n: LocalBrokers(free_port(), data_dir=self.root / f"mqtt{n}", progress=self.say),
            mqtt=True,
        )

    def kafka(self) -> str:
        if self.docker():
            return self._kafka_container()
        return self._local(
            lambda n: LocalBrokers(
                kafka_port=free_port(),
                kafka_controller_port=free_port(),
                data_dir=self.root / f"kafka{n}",
                progress=self.say,
            ),
            kafka=True,
        )

    def _local(
        self, make: Callable[[int], LocalBrokers], mqtt: bool = False, kafka: bool = False
    ) -> str:
        # Free ports, not fixed ones: other test sessions on this machine start brokers too.
        # A port taken between the check and the bind fails one start; the retry gets others.
        for attempt in (1, 2):
            local = make(attempt)
            try:
                endpoints = local.up(timeout=120, mqtt=mqtt, kafka=kafka)
                break
            except (PortInUse, BrokerStartFailed) as exc:
                if attempt == 2:
                    _unavailable(f"no Docker engine, and the local launcher failed: {exc}")
            except BrokerError as exc:
                _unavailable(f"no Docker engine, and the local launcher failed: {exc}")
        self._cleanups.append(lambda: local.down(mqtt=mqtt, kafka=kafka))
        url = endpoints.mqtt_url if mqtt else endpoints.kafka_bootstrap
        assert url is not None
        return url

    def _mqtt_container(self) -> str:
        from testcontainers.core.container import DockerContainer

        container = DockerContainer(MOSQUITTO_IMAGE).with_exposed_ports(1883)
        container.with_command("mosquitto -c /mosquitto-no-auth.conf")
        container.start()
        self._cleanups.append(container.stop)
        host, port = container.get_container_host_ip(), int(container.get_exposed_port(1883))
        self._wait(lambda: mqtt_answers(port, host), "mosquitto container")
        return f"mqtt://{host}:{port}"

    def _kafka_container(self) -> str:
        from testcontainers.core.container import DockerContainer

        port = free_port()  # bound 1:1 so the advertised listener is right from outside
        container = DockerContainer(KAFKA_IMAGE).with_bind_ports(9092, port)
        host = container.get_docker_client().host()  # known before start, unlike the container ip
        for key, value in _kafka_container_env(host, port).items():
            container.with_env(key, value)
        container.start()
        self._cleanups.append(container.stop)
        self._wait(lambda: kafka_answers(port, host), "kafka container")
        return f"{host}:{port}"

    @staticmethod
    def _wait(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.5)
        _unavailable(f"{what} did not answer within {timeout:.0f}s")

    def close(self) -> None:
        for cleanup in reversed(self._cleanups):
            try:
                cleanup()
            except Exception as exc:  # teardown must go on to the next broker
                self.say(f"broker teardown failed: {exc!r}")


def _kafka_container_env(host: str, port: int) -> dict[str, str]:
    return {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{host}:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_NUM_PARTITIONS": "1",
    }


@pytest.fixture(scope="session")
def _brokers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_Brokers]:
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def say(line: str) -> None:
        # Fetching jars or starting Kafka takes seconds; show it live, not after the fact.
        if capture is None:
            print(f"[brokers] {line}", file=sys.stderr)
            return
        with capture.global_and_fixture_disabled():
            print(f"[brokers] {line}", file=sys.stderr, flush=True)

    brokers = _Brokers(tmp_path_factory.mktemp("brokers"), say)
    yield brokers
    brokers.close()


@pytest.fixture(scope="session")
def mqtt_url(_brokers: _Brokers) -> str:
    """URL of a real MQTT v5 broker, e.g. ``mqtt://127.0.0.1:18830``."""
    return os.environ.get("FL_MQTT_URL") or _brokers.mqtt()


@pytest.fixture(scope="session")
def kafka_bootstrap(_brokers: _Brokers) -> str:
    """Bootstrap servers of a real Kafka broker, e.g. ``127.0.0.1:19092``."""
    return os.environ.get("FL_KAFKA_BOOTSTRAP") or _brokers.kafka()
