"""The MQTT broker URL :class:`~flbus.mqtt.MqttBus` accepts, parsed and checked.

``mqtt://[user:pass@]host[:port]`` (port 1883) or ``mqtts://...`` for TLS (port
8883), verifying the broker against the system's CAs or against a private CA
bundle named by ``?ca=/path/ca.pem`` (a hospital's own PKI). A query on a plain
``mqtt://`` URL is refused: a CA without TLS is a mistake, not a wish.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from flbus.errors import BusError
from flproc.redaction import redact


@dataclass(frozen=True, slots=True)
class MqttUrl:
    """Where and how to reach the broker; ``safe`` is the URL without credentials."""

    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    tls: bool
    ca_file: str | None  # a private CA bundle (the hospital's PKI); None: the system's
    safe: str  # for messages: no password

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        """Parse ``url``; raise BusError naming the expected form when it does not fit."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise BusError(
                "MQTT URL must look like mqtt[s]://[user:pass@]host[:port][?ca=/path/ca.pem], "
                f"got {redact(url)!r}"  # a password in a malformed URL is still a secret
            )
        tls = parts.scheme == "mqtts"
        port = parts.port or (8883 if tls else 1883)
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        query = parse_qs(parts.query)
        unknown = sorted(set(query) - {"ca"})
        if unknown or (query and not tls):
            what = unknown or list(query)
            raise BusError(
                f"MQTT URL {parts.scheme}://{parts.hostname}: unexpected query parameters {what}"
            )
        ca = query.get("ca", [None])[-1]
        safe = f"{parts.scheme}://{parts.hostname}:{port}"
        return cls(parts.hostname, port, user, password, tls, ca, safe)
