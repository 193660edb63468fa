"""``flctl provision``, the Kafka part: one SASL/SCRAM user per role instance.

Writes ``<out>/kafka/users.json`` (mode 0600 in a 0700 directory), which
``flctl brokers up --secure <out>`` reads, and returns the ``FL_*`` settings
each role instance needs. Running it again keeps the passwords of users that
exist already (deployed roles keep working) and adds the missing ones.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from flctl.brokers.kafka_secure import USERS_FILE
from flctl.kafka_acls import COORDINATOR, SELECTOR, aggregator_user, users


def _existing(path: Path) -> dict[str, str]:
    try:
        return {str(k): str(v) for k, v in json.loads(path.read_text())["passwords"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def write_kafka(out_dir: Path, hospitals: Sequence[str]) -> dict[str, dict[str, str]]:
    """Create ``out_dir/kafka/`` (users and passwords) for ``hospitals``.

    Returns the ``FL_KAFKA_USERNAME`` / ``FL_KAFKA_PASSWORD`` settings per role
    instance: ``"coordinator"``, ``"selector"`` and ``"aggregator-<hospital>"``.
    The super user ``admin`` is in the file but in no role's settings.
    """
    kafka_dir = out_dir / "kafka"
    kafka_dir.mkdir(parents=True, exist_ok=True)
    kafka_dir.chmod(0o700)
    path = kafka_dir / USERS_FILE
    old = _existing(path)
    # token_urlsafe: letters, digits, "-" and "_", which the storage tool's syntax accepts.
    passwords = {u: old.get(u) or secrets.token_urlsafe(24) for u in users(hospitals)}
    text = json.dumps({"hospitals": list(hospitals), "passwords": passwords}, indent=2) + "\n"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when an old temporary file was left with other modes
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)
    roles = [COORDINATOR, SELECTOR, *map(aggregator_user, hospitals)]
    return {
        role: {"FL_KAFKA_USERNAME": role, "FL_KAFKA_PASSWORD": passwords[role]} for role in roles
    }
