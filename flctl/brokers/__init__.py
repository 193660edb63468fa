"""Start, stop and inspect a local Mosquitto and a local single-node Kafka (KRaft).

Used by ``flctl brokers up|down|status`` and by the test fixtures, so that what a
developer runs by hand is what the tests run against. No Docker is needed:
Mosquitto comes from the OS package, Kafka from its released jars on Maven
Central, fetched once into a cache by the committed recipe ``flctl/kafka/pom.xml``.

One module per job:

    local.py      LocalBrokers: both brokers behind up / down / status
    mosquitto.py  Mosquitto's config
    kafka.py      Kafka's config and KRaft storage format
    supervise.py  a broker as a detached process: state file, start, wait, stop, status
    probes.py     does a port answer MQTT / Kafka (spoken by hand)
    maven.py      the Kafka jars, fetched once with mvn
    tools.py      finding mosquitto, java and mvn
    errors.py     BrokerError and its subclasses

Layout of the data directory (default ``~/.cache/nightshift/brokers``)::

    mosquitto/mosquitto.conf   generated config (its path marks our process)
    mosquitto/data/            persistence
    mosquitto/state.json       pid and port of the process ``up`` started
    kafka/server.properties    generated config (its path marks our process)
    kafka/data/                log.dirs (KRaft metadata and topic data)
    kafka/state.json           pid and ports of the process ``up`` started
    kafka/format.json          cluster id and ports the data dir was formatted for

Logs go to the log directory (default ``<data dir>/logs``).
"""

from flctl.brokers.errors import BrokerError, BrokerStartFailed, PortInUse, ToolMissing
from flctl.brokers.local import DEFAULT_DATA_DIR, BrokerEndpoints, LocalBrokers
from flctl.brokers.maven import (
    DEFAULT_HOME,
    KAFKA_POM,
    default_kafka_cache,
    ensure_kafka_jars,
    kafka_version,
)
from flctl.brokers.probes import kafka_answers, mqtt_answers
from flctl.brokers.supervise import BrokerStatus, free_port
from flctl.brokers.tools import find_tool

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_HOME",
    "KAFKA_POM",
    "BrokerEndpoints",
    "BrokerError",
    "BrokerStartFailed",
    "BrokerStatus",
    "LocalBrokers",
    "PortInUse",
    "ToolMissing",
    "default_kafka_cache",
    "ensure_kafka_jars",
    "find_tool",
    "free_port",
    "kafka_answers",
    "kafka_version",
    "mqtt_answers",
]
