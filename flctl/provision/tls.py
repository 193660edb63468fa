"""``--tls``: a private CA and the broker's server certificate, made with ``cryptography``.

``tls/ca.pem`` is what every device and service is given to verify the broker
(``mqtts://host?ca=.../ca.pem``); ``tls/server.pem`` and ``tls/server.key``
are the broker's; ``tls/ca.key`` signs more certificates later and never leaves
this directory. The server certificate names the broker host of ``--mqtt-url``
plus ``localhost``, ``127.0.0.1`` and the compose service names.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from flctl.provision.files import PUBLIC, write
from flctl.provision.identities import Deployment, Written

VALID = dt.timedelta(days=825)  # the longest life clients accept for a server certificate
COMPOSE_HOSTS = ("mosquitto", "kafka")


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def make_ca_and_server(hosts: list[str], now: dt.datetime) -> dict[str, bytes]:
    """PEM bytes of ``ca.pem``, ``ca.key``, ``server.pem``, ``server.key``."""
    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_name = _name("flctl provision CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALID)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALID)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san(hosts), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return {
        "ca.pem": ca.public_bytes(pem),
        "ca.key": _pem_key(ca_key),
        "server.pem": server.public_bytes(pem),
        "server.key": _pem_key(server_key),
    }


def ca_file(out: Path) -> Path:
    """Where the CA certificate clients verify the broker with lives."""
    return out / "tls" / "ca.pem"


def write_tls(d: Deployment) -> Written:
    """``tls/`` when ``--tls`` was asked for; nothing otherwise."""
    if not d.tls:
        return Written({})
    host = urlsplit(d.mqtt_url).hostname or "localhost"
    files = make_ca_and_server(
        [host, "localhost", "127.0.0.1", *COMPOSE_HOSTS], dt.datetime.now(dt.UTC)
    )
    for name, data in files.items():
        write(d.out / "tls" / name, data, PUBLIC if name.endswith(".pem") else 0o600)
    return Written({}, ("every device and service: tls/ca.pem (public; verifies the broker)",))
