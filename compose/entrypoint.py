"""Entrypoint of the roles' image: take the secrets, wait until what a role needs answers, exec it.

Secrets. compose mounts the parts of ``./secrets`` (``flctl provision``) a
role needs read-only under ``/secrets-mounted``; they belong to whoever ran
provision on the host and are 0600, so the unprivileged ``fl`` user cannot
read them there. Started as root, the entrypoint copies them to ``/secrets``
(the paths the env files name: ``provision --root /secrets``), owned by
``fl`` with their modes kept, then drops to ``fl`` before anything else runs.
A role whose env names a file that is not there, or a selector or aggregator
without ``FL_TOKEN_SECRET``, stops here with exit 2 and a line naming
``flctl provision``.

``entrypoint.py kafka-acls`` is the one-shot service that creates the broker's
ACLs as the super user ``admin`` (``flctl.kafka_acls``, from
``/secrets/kafka/users.json``), so that no role's container holds the admin
password.

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

import asyncio
import os
import pwd
import secrets
import shutil
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from flbus.kafka_auth import KafkaCredentials, client_security
from flctl.brokers.probes import kafka_answers, kafka_sasl_answers, mqtt_answers
from flctl.brokers.probes import recv_exact as _recv  # the probes' framing, shared
from schemas.topics import KAFKA_ROUND_PLANS

WAIT_S = 300.0
READS_PLANS = {"aggregator", "selector"}
MOUNTED, SECRETS, USER = Path("/secrets-mounted"), Path("/secrets"), "fl"
PROVISION = (
    "write them with `flctl provision --out secrets --root /secrets "
    "--mqtt-url mqtt://mosquitto:1883 --hospitals h0,h1,h2` (README, Docker)"
)
FILES = ("FL_SIGNING_KEY", "FL_COORDINATOR_KEY", "FL_DEVICE_CREDENTIALS")
TOPIC_DENIED = 29  # TOPIC_AUTHORIZATION_FAILED: this user's ACLs are not in place (yet)


def take_secrets(mounted: Path = MOUNTED, target: Path = SECRETS, user: str = USER) -> None:
    """Copy ``mounted`` to ``target`` owned by ``user`` (modes kept, directories 0700)."""
    if not mounted.is_dir():
        return
    who = pwd.getpwnam(user)
    shutil.copytree(mounted, target, dirs_exist_ok=True)
    for path in (target, *target.rglob("*")):
        os.chown(path, who.pw_uid, who.pw_gid)
        if path.is_dir():
            path.chmod(0o700)


def drop_to(user: str = USER) -> None:
    """Become ``user`` for good (nothing to do unless root)."""
    if os.getuid() != 0:
        return
    who = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(who.pw_gid)
    os.setuid(who.pw_uid)
    os.environ["HOME"] = who.pw_dir


def problems(argv: list[str], env: dict[str, str]) -> list[str]:
    """What the provisioned secrets lack for the role in ``argv`` (empty: nothing)."""
    role = argv[1] if len(argv) > 1 and argv[0] == "flctl" else ""
    found = [f"{name}={env[name]} does not exist" for name in FILES
             if env.get(name) and not Path(env[name]).is_file()]  # fmt: skip
    if role in READS_PLANS and not env.get("FL_TOKEN_SECRET"):
        found.append("FL_TOKEN_SECRET is not set")
    if role == "kafka-acls" and not (SECRETS / "kafka" / "users.json").is_file():
        found.append(f"{SECRETS}/kafka/users.json does not exist")
    return found


def _credentials(env: dict[str, str]) -> KafkaCredentials | None:
    user = env.get("FL_KAFKA_USERNAME", "")
    return KafkaCredentials(user, env.get("FL_KAFKA_PASSWORD", "")) if user else None


def topic_error(host: str, port: int, topic: str, creds: KafkaCredentials) -> int | None:
    """Kafka's error code for ``topic`` in a Metadata request as ``creds`` (None: no answer)."""
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    async def ask() -> int:
        conn = await create_conn(host, port, **client_security(creds))
        try:
            resp = await conn.send(MetadataRequest([topic], allow_auto_topic_creation=False))
        finally:
            conn.close()
        return int(resp.topics[0][0])

    try:
        return asyncio.run(asyncio.wait_for(ask(), 5.0))
    except Exception:  # any failure to ask means "not ready yet"
        return None


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
    """What the role in ``argv`` waits for, by a name for the log line.

    With Kafka credentials the broker is a SASL listener, which answers nothing
    before a login: its probe is a SCRAM handshake, and the topic check logs in
    as the role, so it also waits until the role's ACLs are in place.
    """
    checks: dict[str, Callable[[], bool]] = {}
    role = argv[1] if len(argv) > 1 and argv[0] == "flctl" else argv[0] if argv else ""
    creds = _credentials(env)
    if env.get("FL_KAFKA_BOOTSTRAP") and role != "devices":
        host, port = _host_port(env["FL_KAFKA_BOOTSTRAP"])
        if creds is None:
            checks[f"kafka {host}:{port}"] = lambda: kafka_answers(port, host)
            if role in READS_PLANS:
                checks[f"topic {KAFKA_ROUND_PLANS}"] = lambda: kafka_has_topic(
                    host, port, KAFKA_ROUND_PLANS
                )
        else:
            checks[f"kafka {host}:{port}"] = lambda: kafka_sasl_answers(port, host)
            if role in READS_PLANS:
                checks[f"topic {KAFKA_ROUND_PLANS}"] = lambda: (
                    topic_error(host, port, KAFKA_ROUND_PLANS, creds) == 0
                )
            elif role == "coordinator":
                checks[f"acls of {creds.username}"] = lambda: (
                    topic_error(host, port, KAFKA_ROUND_PLANS, creds) not in (None, TOPIC_DENIED)
                )
    if env.get("FL_MQTT_URL") and role in ("selector", "devices"):
        url = urlsplit(env["FL_MQTT_URL"])
        mqtt_host, mqtt_port = url.hostname or "127.0.0.1", url.port or 1883
        # Anonymous probes are refused by the locked broker: a refusing CONNACK is an answer.
        checks[f"mqtt {mqtt_host}:{mqtt_port}"] = lambda: mqtt_answers(
            mqtt_port, mqtt_host, refused_ok=True
        )
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


def create_acls(env: dict[str, str]) -> int:
    """``kafka-acls``: the ACL table, created as ``admin``; 0 when in place."""
    from flctl.brokers.errors import BrokerError
    from flctl.brokers.kafka_secure import SecureKafka

    try:
        secure = SecureKafka(SECRETS / "kafka")
        count = secure.create_acls(env["FL_KAFKA_BOOTSTRAP"], time.monotonic() + WAIT_S)
    except BrokerError as exc:
        print(f"entrypoint: {exc}", file=sys.stderr)
        return 1
    print(f"entrypoint: {count} Kafka ACLs in place for {', '.join(secure.hospitals)}")
    return 0


def main(argv: list[str]) -> None:
    if not argv:
        argv = ["flctl", "--help"]
    if os.getuid() == 0:
        take_secrets()
        drop_to()
    env = dict(os.environ)
    found = problems(argv, env)
    if found:
        print(f"entrypoint: {'; '.join(found)}: {PROVISION}", file=sys.stderr)
        sys.exit(2)
    if argv[0] == "kafka-acls":
        host, port = _host_port(env["FL_KAFKA_BOOTSTRAP"])
        wait({f"kafka {host}:{port}": lambda: kafka_sasl_answers(port, host)})
        sys.exit(create_acls(env))
    wait(needs(argv, env))
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
