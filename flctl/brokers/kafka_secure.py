"""The secured local Kafka: SASL/SCRAM users and ACLs from a provisioned ``<dir>/kafka``.

``<dir>/kafka/users.json`` (mode 0600, written by ``flctl.provision.kafka``)::

    {"hospitals": ["h0", "h1"], "passwords": {"admin": "...", "coordinator": "...", ...}}

The users go into the KRaft storage when it is formatted (``--add-scram``);
the ACLs (``flctl.kafka_acls``) are created through the Admin protocol as
``admin`` once the broker answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

from flctl.brokers.errors import BrokerError, BrokerStartFailed

USERS_FILE = "users.json"
MECHANISM = "SCRAM-SHA-512"


def read_users(kafka_dir: Path) -> tuple[tuple[str, ...], dict[str, str]]:
    """(hospitals, passwords by user) from ``kafka_dir/users.json``; BrokerError if unusable."""
    path = kafka_dir / USERS_FILE
    try:
        data = json.loads(path.read_text())
        hospitals = tuple(str(h) for h in data["hospitals"])
        passwords = {str(k): str(v) for k, v in data["passwords"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BrokerError(f"no usable Kafka users in {path} (run flctl provision): {exc}") from None
    if "admin" not in passwords:
        raise BrokerError(f"{path} has no password for the super user 'admin'")
    bad = [u for u, p in passwords.items() if not p or any(c in p for c in ',[]="\\ ')]
    if bad:
        raise BrokerError(f"{path}: empty or unquotable password of {bad}")
    return hospitals, passwords


class SecureKafka:
    """What a secured broker adds: listener settings, format arguments, ACL set-up."""

    def __init__(self, kafka_dir: Path) -> None:
        self.dir = kafka_dir
        self.hospitals, self.passwords = read_users(kafka_dir)

    def digest(self) -> str:
        """Changes when a user or password changes (the storage is then formatted again)."""
        return hashlib.sha256(json.dumps(self.passwords, sort_keys=True).encode()).hexdigest()

    def broker_properties(
        self, port: int, controller_port: int, host: str = "127.0.0.1"
    ) -> dict[str, str]:
        """server.properties entries of a SASL_PLAINTEXT client listener with ACLs."""
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="admin" password="{self.passwords["admin"]}";'
        )
        return {
            "listeners": f"SASL_PLAINTEXT://{host}:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"SASL_PLAINTEXT://{host}:{port}",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.sasl_plaintext.{MECHANISM.lower()}.sasl.jaas.config": jaas,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # ANONYMOUS is the peer on the loopback PLAINTEXT controller listener: the
            # broker itself registering with its controller (same process, one node).
            "super.users": "User:admin;User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
        }

    def format_args(self) -> list[str]:
        """``kafka-storage format`` arguments that create every user."""
        args: list[str] = []
        for user, password in self.passwords.items():
            args += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
        return args

    def create_acls(self, bootstrap: str, deadline: float) -> int:
        """Create the ACL table for the provisioned hospitals, retrying until ``deadline``."""
        from flbus.errors import BrokerUnavailableError, BusError
        from flbus.kafka_acl import create_acls
        from flbus.kafka_auth import KafkaCredentials
        from flctl.kafka_acls import acls

        admin = KafkaCredentials("admin", self.passwords["admin"])
        wanted = acls(self.hospitals)
        while True:
            try:
                return asyncio.run(create_acls(bootstrap, admin, wanted))
            except BusError as exc:  # unavailable: it may still be catching up with its metadata
                if not isinstance(exc, BrokerUnavailableError) or time.monotonic() > deadline:
                    raise BrokerStartFailed(f"kafka: ACLs could not be created: {exc}") from None
                time.sleep(1.0)
