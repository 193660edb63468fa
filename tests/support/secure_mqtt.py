"""A Mosquitto started from ``flctl provision`` output, as ``flctl brokers up --secure`` does.

:func:`secure_mosquitto` provisions a directory, starts the broker on a free
port with that directory's password file and ACL, and yields a
:class:`SecureMqtt` that hands out URLs per identity. Under ``CI=true`` a
missing mosquitto fails the test instead of skipping it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flctl.brokers import BrokerError, LocalBrokers, free_port
from flctl.provision import provision
from flctl.provision.credentials import DeviceCredential, read_credentials, with_credentials
from flctl.provision.identities import SELECTOR


@dataclass(frozen=True)
class SecureMqtt:
    """A running secured broker and the identities provisioned for it."""

    url: str  # without credentials: an anonymous client
    secrets: Path
    devices: dict[str, DeviceCredential]  # device id -> credential, every hospital

    def device_url(self, device: str) -> str:
        """The URL device ``device`` connects with."""
        cred = self.devices[device]
        return with_credentials(self.url, cred.username, cred.password)

    def selector_url(self) -> str:
        """The URL the selectors connect with (from services/selector.env)."""
        env = (self.secrets / "services" / f"{SELECTOR}.env").read_text()
        line = next(x for x in env.splitlines() if x.startswith("FL_MQTT_URL="))
        return line.partition("=")[2]


@contextlib.contextmanager
def secure_mosquitto(
    root: Path,
    hospitals: tuple[str, ...] = ("h0", "h1"),
    devices_per_hospital: int = 2,
    *,
    tls: bool = False,
) -> Iterator[SecureMqtt]:
    """Provision ``root/secrets`` and run a secured Mosquitto until the block ends.

    With ``tls`` the identities point at the broker's TLS listener
    (``mqtts://...?ca=<secrets>/tls/ca.pem``). Raises BrokerError when
    mosquitto is missing or does not start (the caller turns that into a skip,
    or a failure under CI).
    """
    port, tls_port = free_port(), free_port()
    url = f"mqtts://127.0.0.1:{tls_port}" if tls else f"mqtt://127.0.0.1:{port}"
    done = provision(root / "secrets", hospitals, devices_per_hospital, mqtt_url=url, tls=tls)
    out = done.out
    brokers = LocalBrokers(port, data_dir=root / "brokers", secure=out, mqtts_port=tls_port)
    brokers.up(timeout=30, kafka=False)
    try:
        handouts = sorted((out / "devices").glob("*.csv"))
        url = f"{url}?ca={out / 'tls' / 'ca.pem'}" if tls else url
        yield SecureMqtt(url, out, read_credentials(handouts))
    finally:
        brokers.down(kafka=False)


__all__ = ["BrokerError", "SecureMqtt", "secure_mosquitto"]
