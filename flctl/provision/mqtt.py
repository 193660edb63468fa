"""The device plane's identities: Mosquitto's password file and ACL, device hand-outs.

Each device gets its own user ``<hospital>.<device>``; the selectors share one
user, ``selector``. The ACL (Mosquitto's ``acl_file``, one block per user)
confines a device to publishing its own check-ins, uploads and evaluations and
to reading its own task topic and ``fl/v1/models/#``; only ``selector`` may
publish tasks and the retained plans, models and artifacts, and read what
devices send. Admission tokens (in a Task, in upload headers) therefore reach
only their device and the selectors.

Shared subscriptions need nothing special: Mosquitto 2 checks a
``$share/selectors/fl/v1/+/+/checkin`` subscription and every delivery against
the topic without the ``$share/<group>/`` prefix (tested with real Mosquitto in
``tests/integration/test_mqtt_acl.py``). A subscription to a topic the user may
not read is granted, but nothing is delivered on it.

Passwords are hashed here in Mosquitto's own ``$7$`` format (PBKDF2-SHA512,
what ``mosquitto_passwd`` writes), so no plaintext touches the disk except the
hand-outs meant to carry it.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
from collections.abc import Callable

from flctl.provision.credentials import with_credentials
from flctl.provision.files import write
from flctl.provision.identities import (
    SELECTOR,
    Deployment,
    EnvLines,
    Written,
    device_username,
    simulator,
)
from schemas import topics

ITERATIONS = 101  # mosquitto_passwd's default; the passwords are random, not words
SALT_BYTES = 12


def mosquitto_hash(password: str, salt: bytes, iterations: int = ITERATIONS) -> str:
    """``$7$<iterations>$<salt>$<hash>``: Mosquitto 2's PBKDF2-SHA512 password hash."""
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def passwd_text(
    users: dict[str, str], salt: Callable[[int], bytes] = os.urandom, iterations: int = ITERATIONS
) -> str:
    """A Mosquitto ``password_file``: ``user:hash`` per line."""
    return "".join(
        f"{user}:{mosquitto_hash(pw, salt(SALT_BYTES), iterations)}\n" for user, pw in users.items()
    )


def device_acl(hospital: str, device: str) -> list[str]:
    """A device's block: write its own check-in, upload, eval; read its task and the models."""
    own = [topics.checkin_topic, topics.upload_topic, topics.eval_topic]
    return [
        f"user {device_username(hospital, device)}",
        *(f"topic write {topic(hospital, device)}" for topic in own),
        f"topic read {topics.task_topic(hospital, device)}",
        f"topic read {topics.MQTT_ROOT}/models/#",
    ]


def selector_acl(user: str = SELECTOR) -> list[str]:
    """The selectors' block: tasks and retained model state out, device messages in."""
    any_device = f"{topics.MQTT_ROOT}/+/+"
    return [
        f"user {user}",
        f"topic write {any_device}/{topics.TASK}",
        *(
            f"topic read {any_device}/{leaf}"
            for leaf in (topics.CHECKIN, topics.UPLOAD, topics.EVAL)
        ),
        f"topic readwrite {topics.MQTT_ROOT}/models/#",
    ]


def acl_text(devices: dict[str, tuple[str, ...]]) -> str:
    """Mosquitto's ``acl_file``: no anonymous block, so anonymous clients read nothing."""
    blocks = [selector_acl()] + [device_acl(h, d) for h, ids in devices.items() for d in ids]
    head = "# written by flctl provision; one block per user, nothing for anonymous clients\n"
    return head + "\n".join("\n".join(block) + "\n" for block in blocks)


def devices_csv(rows: list[tuple[str, str, str]]) -> str:
    """A hospital's hand-out: ``device_id,username,password`` per device."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("device_id", "username", "password"))
    writer.writerows(rows)
    return buf.getvalue()


def write_mqtt(d: Deployment) -> Written:
    """Password file, ACL and per-hospital device hand-outs; selector and simulator env."""
    users = {SELECTOR: d.new_secret()}
    env: EnvLines = {
        SELECTOR: [f"FL_MQTT_URL={with_credentials(d.mqtt_url, SELECTOR, users[SELECTOR])}"]
    }
    for hospital, ids in d.devices.items():
        rows = [(dev, device_username(hospital, dev), d.new_secret()) for dev in ids]
        users.update({user: pw for _, user, pw in rows})
        write(d.out / "devices" / f"{hospital}.csv", devices_csv(rows))
        env[simulator(hospital)] = [
            f"FL_MQTT_URL={d.mqtt_url}",
            f"FL_DEVICE_CREDENTIALS={d.at('devices', f'{hospital}.csv')}",
        ]
    write(d.out / "mosquitto" / "passwd", passwd_text(users))
    write(d.out / "mosquitto" / "acl", acl_text(dict(d.devices)))
    note = f"broker: mosquitto/passwd and mosquitto/acl ({len(users)} MQTT users)"
    return Written(env, (note,))
