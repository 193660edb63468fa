"""Both brokers of a local stack, behind one object: what ``flctl brokers`` drives."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flctl.brokers.kafka import Kafka
from flctl.brokers.maven import DEFAULT_HOME, default_kafka_cache
from flctl.brokers.mosquitto import Mosquitto
from flctl.brokers.supervise import Broker, BrokerStatus, Progress

DEFAULT_DATA_DIR = DEFAULT_HOME / "brokers"


@dataclass(frozen=True)
class BrokerEndpoints:
    """Where the brokers answer; ``None`` for a broker that was not asked for."""

    mqtt_url: str | None
    kafka_bootstrap: str | None


class LocalBrokers:
    """A local Mosquitto and a local single-node Kafka, managed through a data directory."""

    def __init__(
        self,
        mqtt_port: int = 1883,
        kafka_port: int = 9092,
        data_dir: Path | str | None = None,
        log_dir: Path | str | None = None,
        *,
        kafka_controller_port: int | None = None,
        kafka_cache: Path | str | None = None,
        search_path: str | None = None,
        progress: Progress = lambda _: None,
        secure: Path | str | None = None,
        mqtts_port: int = 8883,
        host: str = "127.0.0.1",
    ) -> None:
        """Describe the brokers; nothing starts until :meth:`up`.

        ``kafka_controller_port`` defaults to ``kafka_port + 1``; ``kafka_cache``
        to :func:`default_kafka_cache`; ``search_path`` (a PATH string) is where
        mosquitto, java and mvn are looked up; ``progress`` receives one line
        per step. ``secure`` is a directory ``flctl provision`` wrote: Mosquitto
        then refuses anonymous clients and, if it holds ``tls/``, also listens
        for TLS on ``mqtts_port``; Kafka requires the SASL/SCRAM users of its
        ``kafka/`` and applies the ACLs (``flctl.brokers.kafka_secure``).
        ``host`` is the address both client listeners bind and advertise.
        """
        self.data_dir = Path(data_dir or DEFAULT_DATA_DIR).expanduser().resolve()
        logs = Path(log_dir).expanduser().resolve() if log_dir else self.data_dir / "logs"
        cache = Path(kafka_cache).expanduser() if kafka_cache else default_kafka_cache()
        self.mosquitto = Mosquitto(
            self.data_dir / "mosquitto", logs, mqtt_port, progress, search_path
        )
        if secure is not None:
            self.mosquitto.secure = Path(secure).expanduser().resolve()
            self.mosquitto.tls_port = mqtts_port
        self.kafka = Kafka(
            self.data_dir / "kafka",
            logs,
            kafka_port,
            progress,
            search_path,
            controller_port=kafka_controller_port or kafka_port + 1,
            cache=cache,
            secure=Path(secure).expanduser().resolve() / "kafka" if secure else None,
        )
        self.mosquitto.host = self.kafka.host = host

    def _chosen(self, mqtt: bool, kafka: bool) -> Iterator[Broker]:
        if mqtt:
            yield self.mosquitto
        if kafka:
            yield self.kafka

    def up(
        self, timeout: float = 120.0, *, mqtt: bool = True, kafka: bool = True
    ) -> BrokerEndpoints:
        """Start what is not running yet and wait until every chosen broker answers.

        Parameters
        ----------
        timeout: seconds to wait for the brokers to answer, after tools and jars are ready.
        mqtt, kafka: which brokers to bring up.

        Returns
        -------
        The endpoints of the chosen brokers. Raises a :class:`BrokerError`
        subclass naming what is missing; a broker this call started is stopped
        again when another one fails, so nothing half-started is left behind.
        """
        started: list[Broker] = []
        try:
            for broker in self._chosen(mqtt, kafka):
                if broker.start() is not None:
                    started.append(broker)
            deadline = time.monotonic() + timeout
            for broker in self._chosen(mqtt, kafka):
                broker.wait(deadline)
        except BaseException:
            for broker in started:
                broker.stop(grace=10)
            raise
        return BrokerEndpoints(
            mqtt_url=self.mosquitto.endpoint() if mqtt else None,
            kafka_bootstrap=self.kafka.endpoint() if kafka else None,
        )

    def down(self, *, mqtt: bool = True, kafka: bool = True, grace: float = 30.0) -> list[str]:
        """Stop the brokers ``up`` started from this data directory; one line per broker."""
        return [broker.stop(grace) for broker in self._chosen(mqtt, kafka)]

    def status(self) -> list[BrokerStatus]:
        """Report each broker's state, port and pid."""
        return [self.mosquitto.status(), self.kafka.status()]
