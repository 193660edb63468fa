"""``flctl provision``: every identity a deployment needs, written once into one directory.

Layout of the output directory (0700; files holding secrets 0600)::

    mosquitto/passwd           Mosquitto password file ($7$ PBKDF2-SHA512 hashes)
    mosquitto/acl              Mosquitto acl_file: one block per user
    services/<instance>.env    FL_* lines per service instance (coordinator, selector,
                               aggregator-<h>, devices-<h> for the simulator)
    devices/<hospital>.csv     device_id,username,password: a hospital's hand-out
    kafka/users.json           SASL/SCRAM users and passwords (admin and one per role instance)
    signing/coordinator.key    the coordinator's Ed25519 signing key (0600)
    signing/coordinator.pub    its public half, which every device pins (0644)
    tls/                       with --tls: ca.pem, ca.key, server.pem, server.key

Each plane has a *writer* in :data:`WRITERS`: a function ``Deployment -> Written``
that writes its own files under ``deployment.out`` and returns the env lines
each service instance needs (merged into ``services/<instance>.env``) and lines
for the summary. A plane adds its module here and to :data:`WRITERS`.

Paths in env files name ``root`` (default: ``out`` itself), the place the
roles will find the directory, e.g. ``/secrets`` where compose mounts it.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from flctl.provision.errors import ProvisionError
from flctl.provision.files import merge_env, prepare, write_env_files
from flctl.provision.identities import (
    Deployment,
    Written,
    aggregator,
    common_env,
    device_ids,
)
from flctl.provision.kafka import write_kafka
from flctl.provision.mqtt import write_mqtt
from flctl.provision.signing import PUB_FILE, write_signing
from flctl.provision.tls import ca_file, write_tls
from schemas.errors import ValidationError
from schemas.topics import check_id

Writer = Callable[[Deployment], Written]

WRITERS: list[Writer] = [common_env, write_tls, write_mqtt, write_kafka, write_signing]
"""Every plane's writer, in order; each returns env lines for the instances it configures."""

__all__ = [
    "WRITERS",
    "Deployment",
    "ProvisionError",
    "Provisioned",
    "Writer",
    "Written",
    "provision",
]


@dataclass(frozen=True)
class Provisioned:
    """What ``provision`` wrote: the directory, the env files and the summary lines."""

    out: Path
    env_files: tuple[Path, ...]
    notes: tuple[str, ...]

    def summary(self) -> str:
        """What to hand to whom, naming files (never a secret)."""
        lines = [f"wrote {self.out} (keep it private: it holds every credential)", *self.notes]
        lines.append(
            "services: services/<instance>.env for each instance "
            f"({', '.join(p.stem for p in self.env_files)})"
        )
        return "\n".join(f"  {line}" if i else line for i, line in enumerate(lines))


def _handouts(d: Deployment) -> tuple[str, ...]:
    """Who gets which files: each hospital, each device, the coordinator, the brokers."""
    pub = f"signing/{PUB_FILE}"
    ca = " and tls/ca.pem" if d.tls else ""
    return (
        *(
            f"hospital {h}: services/{aggregator(h)}.env (its aggregator), devices/{h}.csv "
            f"({len(d.devices[h])} devices), {pub}{ca}"
            for h in d.hospitals
        ),
        f"each device: only its own row of devices/<hospital>.csv, {pub}{ca} (it pins the key)",
        "coordinator: services/coordinator.env and signing/coordinator.key (nobody else)",
        f"brokers: `flctl brokers up --secure {d.out}` (or compose, mounting it at /secrets)",
    )


def _mqtt_url(url: str, root: Path, tls: bool) -> str:
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ProvisionError("--mqtt-url must not carry credentials; provision makes them")
    if tls and parts.scheme == "mqtts" and not parts.query:
        return f"{url}?ca={ca_file(root)}"
    return url


def provision(
    out: Path,
    hospitals: Sequence[str],
    devices_per_hospital: int,
    *,
    mqtt_url: str = "mqtt://127.0.0.1:1883",
    tls: bool = False,
    root: Path | None = None,
    force: bool = False,
    new_secret: Callable[[], str] = lambda: secrets.token_urlsafe(24),
    writers: Sequence[Writer] = (),
) -> Provisioned:
    """Write every identity into ``out``; on any failure remove what was written.

    ``root`` is where the roles will read ``out`` (default ``out``): env files
    name paths under it. Raises ProvisionError when ``out`` exists (without
    ``force``, or not ours) or an id cannot go into a topic.
    """
    try:
        for h in hospitals:
            check_id(h, "hospital")
    except ValidationError as exc:
        raise ProvisionError(str(exc)) from None
    out = out.expanduser().resolve()
    if root is not None and not root.is_absolute():
        raise ProvisionError(f"--root must be an absolute path, not {root}")
    root = out if root is None else root
    d = Deployment(
        out=out,
        root=root,
        hospitals=tuple(hospitals),
        devices={h: device_ids(h, devices_per_hospital) for h in hospitals},
        mqtt_url=_mqtt_url(mqtt_url, root, tls),
        tls=tls,
        new_secret=new_secret,
    )
    prepare(out, force)
    try:
        results = [writer(d) for writer in (writers or WRITERS)]
        env = merge_env(d.instances, (r.env for r in results))
        env_files = write_env_files(out, env)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    notes = (*(n for r in results for n in r.notes), *_handouts(d))
    return Provisioned(out, tuple(env_files), notes)
