"""Entrypoint of the roles' image: wait until what a role needs answers, then exec the role.

``entrypoint.py flctl <role> ...`` waits for the brokers named by the role's own
settings (``FL_KAFKA_BOOTSTRAP``, ``FL_MQTT_URL``) to answer their protocol
(``flctl.brokers.probes``: a Kafka Metadata request that lists a broker, an MQTT
CONNECT that gets a CONNACK), and, for the roles that read the coordinator's
round plans, for the plans topic to exist: the coordinator creates it compacted,
and a consumer that came first would leave it auto-created and not compacted.

Compose's ``depends_on: condition: service_healthy`` says the same on Docker;
podman-compose with podman < 4.6 ignores it and there is no systemd to schedule
health checks, so the wait lives here, where every engine runs it. After
``WAIT_S`` seconds it starts the role anyway: the role then fails on its own,
naming the broker, and the restart policy retries.
"""

from __future__ import annotations

import os
import secrets
import socket
import struct
import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from flctl.brokers.probes import kafka_answers, mqtt_answers
from flctl.brokers.probes import recv_exact as _recv  # the probes' framing, shared
from schemas.topics import KAFKA_ROUND_PLANS

WAIT_S = 300.0
READS_PLANS = {"aggregator", "selector"}


def _host_port(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    return host, int(port)


def kafka_has_topic(host: str, port: int, topic: str, timeout: float = 2.0) -> bool:
    """True when a Metadata v4 request for ``topic`` (no auto-creation) finds it."""
    corr, client, name = secrets.randbelow(2**31), b"fl-entrypoint", topic.encode()
    req = (
        struct.pack(">hhih", 3, 4, corr, len(client))
        + client
        + struct.pack(">ih", 1, len(name))
        + name
        + b"\x00"  # allow_auto_topic_creation = false
    )
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(req)) + req)
            size = struct.unpack(">i", _recv(sock, 4))[0]
            resp = _recv(sock, size)
        got, _throttle, brokers = struct.unpack(">iii", resp[:12])
        at = 12
        for _ in range(brokers):  # node_id, host, port, rack (nullable)
            at += 4
            at += 2 + struct.unpack(">h", resp[at : at + 2])[0]
            at += 4
            rack = struct.unpack(">h", resp[at : at + 2])[0]
            at += 2 + max(rack, 0)
        cluster = struct.unpack(">h", resp[at : at + 2])[0]
        at += 2 + max(cluster, 0) + 4  # cluster_id, controller_id
        topics = struct.unpack(">i", resp[at : at + 4])[0]
        error = struct.unpack(">h", resp[at + 4 : at + 6])[0]
        return bool(got == corr and topics == 1 and error == 0)
    except (OSError, struct.error):
        return False


def needs(argv: list[str], env: dict[str, str]) -> dict[str, Callable[[], bool]]:
    """What the role in ``argv`` waits for, by a name for the log line."""
    checks: dict[str, Callable[[], bool]] = {}
    role = argv[1] if len(argv) > 1 and argv[0] == "flctl" else ""
    if env.get("FL_KAFKA_BOOTSTRAP") and role != "devices":
        host, port = _host_port(env["FL_KAFKA_BOOTSTRAP"])
        checks[f"kafka {host}:{port}"] = lambda: kafka_answers(port, host)
        if role in READS_PLANS:
            checks[f"topic {KAFKA_ROUND_PLANS}"] = lambda: kafka_has_topic(
                host, port, KAFKA_ROUND_PLANS
            )
    if env.get("FL_MQTT_URL") and role != "coordinator" and role != "aggregator":
        url = urlsplit(env["FL_MQTT_URL"])
        mqtt_host, mqtt_port = url.hostname or "127.0.0.1", url.port or 1883
        checks[f"mqtt {mqtt_host}:{mqtt_port}"] = lambda: mqtt_answers(mqtt_port, mqtt_host)
    return checks


def wait(checks: dict[str, Callable[[], bool]], deadline_s: float = WAIT_S) -> bool:
    """Poll each check in order until it passes; False if the deadline passes first."""
    end = time.monotonic() + deadline_s
    for name, check in checks.items():
        while not check():
            if time.monotonic() > end:
                print(f"entrypoint: {name} not ready after {deadline_s:.0f} s", file=sys.stderr)
                return False
            time.sleep(1.0)
        print(f"entrypoint: {name} ready", file=sys.stderr, flush=True)
    return True


def main(argv: list[str]) -> None:
    if not argv:
        argv = ["flctl", "--help"]
    wait(needs(argv, dict(os.environ)))
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
