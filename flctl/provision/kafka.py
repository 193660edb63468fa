"""The service plane's identities: one SASL/SCRAM user per role instance on Kafka.

Writes ``kafka/users.json`` (0600), which ``flctl brokers up --secure`` and
compose's Kafka read::

    {"hospitals": ["h0", "h1"], "passwords": {"admin": "...", "coordinator": "...", ...}}

and gives the coordinator, the selector and each ``aggregator-<hospital>``
its ``FL_KAFKA_USERNAME`` / ``FL_KAFKA_PASSWORD``. The super user ``admin``
(topics and ACLs, ``flctl replay``, ``flctl dlq``) is in the file only: no
role runs as it. Passwords come from ``Deployment.new_secret`` (URL-safe
letters, digits, ``-`` and ``_``: what Kafka's ``--add-scram`` syntax and the
compose Kafka's start script accept).
"""

from __future__ import annotations

import json

from flctl.brokers.kafka_secure import USERS_FILE
from flctl.kafka_acls import ADMIN, COORDINATOR, SELECTOR, aggregator_user, users
from flctl.provision.files import write
from flctl.provision.identities import Deployment, Written, aggregator


def write_kafka(d: Deployment) -> Written:
    """``kafka/users.json`` and each Kafka-speaking instance's user and password."""
    passwords = {user: d.new_secret() for user in users(d.hospitals)}
    text = json.dumps({"hospitals": list(d.hospitals), "passwords": passwords}, indent=2)
    write(d.out / "kafka" / USERS_FILE, text + "\n")
    instances = {
        COORDINATOR: COORDINATOR,
        SELECTOR: SELECTOR,
        **{aggregator(h): aggregator_user(h) for h in d.hospitals},
    }
    env = {
        instance: [f"FL_KAFKA_USERNAME={user}", f"FL_KAFKA_PASSWORD={passwords[user]}"]
        for instance, user in instances.items()
    }
    note = (
        f"broker: kafka/{USERS_FILE} ({len(passwords)} SASL/SCRAM users; "
        f"{ADMIN} is the broker's super user, for operators only)"
    )
    return Written(env, (note,))
