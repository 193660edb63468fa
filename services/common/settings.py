"""Settings more than one service reads, declared once (see ``flproc.settings``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flbus.kafka_auth import KafkaCredentials
from flproc.errors import SettingError
from flproc.keys import coordinator_key_file
from flproc.parsers import ids_or_count, secret_bytes
from flproc.settings import Setting

TOKEN_SECRET = Setting(
    "token_secret",
    "--token-secret",
    "FL_TOKEN_SECRET",
    "admission token secret, the same for every selector and aggregator",
    secret_bytes,
    secret=True,
    required=True,
)

HOSPITALS = Setting(
    "hospitals",
    "--hospitals",
    "FL_HOSPITALS",
    "hospital ids, comma separated, or a count (3 = h0,h1,h2)",
    ids_or_count("h"),
    "h0,h1,h2",
)

KAFKA_USERNAME = Setting(
    "kafka_username",
    "--kafka-username",
    "FL_KAFKA_USERNAME",
    "SASL/SCRAM-SHA-512 user on Kafka (empty: no authentication, PLAINTEXT)",
    default="",
)

KAFKA_PASSWORD = Setting(
    "kafka_password",
    "--kafka-password",
    "FL_KAFKA_PASSWORD",
    "password of the Kafka user (from flctl provision)",
    secret=True,
)

KAFKA_AUTH = (KAFKA_USERNAME, KAFKA_PASSWORD)
"""Who a process is to Kafka; every command that opens a KafkaBus reads these."""


def kafka_credentials(values: Mapping[str, Any]) -> KafkaCredentials | None:
    """The credentials in resolved ``KAFKA_AUTH`` values (None: no user given).

    Raises SettingError naming the field when only one of user and password is set.
    """
    user, password = values.get("kafka_username") or "", values.get("kafka_password") or ""
    if not user and not password:
        return None
    if not user:
        raise SettingError("kafka_username", "a Kafka password was given without a user")
    if not password:
        raise SettingError("kafka_password", f"Kafka user {user!r} needs a password")
    return KafkaCredentials(user, password)


COORDINATOR_KEY = Setting(
    "coordinator_key",
    "--coordinator-key",
    "FL_COORDINATOR_KEY",
    "the coordinator's Ed25519 public key (PEM file): devices adopt only plans, model "
    "versions and artifacts it signed",
    coordinator_key_file,
    required=True,
)
