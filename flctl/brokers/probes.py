"""Whether a broker answers its own protocol, spoken by hand (no client library needed).

An open port is not enough: a broker listens well before it serves, and a
foreign process may hold the port. Each probe sends the smallest request that
only a working broker answers.
"""

from __future__ import annotations

import secrets
import socket
import struct


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes from ``sock``; ConnectionError if it closes first."""
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def mqtt_answers(
    port: int, host: str = "127.0.0.1", timeout: float = 2.0, *, refused_ok: bool = False
) -> bool:
    """True when an MQTT v5 CONNECT on ``host:port`` gets a successful CONNACK.

    With ``refused_ok`` a CONNACK refusing the anonymous probe (a broker with
    authentication on) counts too: the broker is up and speaking MQTT.
    """
    client_id = b"flctl-probe-" + secrets.token_hex(4).encode()
    var = b"\x00\x04MQTT\x05\x02\x00\x0a\x00"  # v5, clean start, keepalive 10, no properties
    body = var + struct.pack(">H", len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(bytes([0x10, len(body)]) + body)
            head = recv_exact(sock, 2)
            rest = recv_exact(sock, head[1])
            sock.sendall(b"\xe0\x00")  # DISCONNECT
        refused = refused_ok and len(rest) >= 2 and rest[1] in (0x86, 0x87)
        return head[0] == 0x20 and len(rest) >= 2 and (rest[1] == 0 or refused)
    except OSError:
        return False


def kafka_answers(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> bool:
    """True when a Kafka Metadata v4 request on ``host:port`` lists at least one broker."""
    corr = secrets.randbelow(2**31)
    client = b"flctl-probe"
    # header v1: api_key 3 (Metadata), version 4, correlation id, client id;
    # body: topics = empty array, allow_auto_topic_creation = false
    req = struct.pack(">hhih", 3, 4, corr, len(client)) + client + struct.pack(">ib", 0, 0)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(req)) + req)
            size = struct.unpack(">i", recv_exact(sock, 4))[0]
            resp = recv_exact(sock, size)
        got_corr, _throttle, n_brokers = struct.unpack(">iii", resp[:12])
        return bool(got_corr == corr and n_brokers > 0)
    except (OSError, struct.error):
        return False


def kafka_sasl_answers(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> bool:
    """True when a SASL listener on ``host:port`` accepts a SCRAM-SHA-512 handshake.

    A SASL listener answers nothing else before a client authenticates, so this
    is the probe of a broker started with ``--secure`` (it does not log in).
    """
    corr = secrets.randbelow(2**31)
    client, mechanism = b"flctl-probe", b"SCRAM-SHA-512"
    # header v1: api_key 17 (SaslHandshake), version 1; body: mechanism
    req = struct.pack(">hhih", 17, 1, corr, len(client)) + client
    req += struct.pack(">h", len(mechanism)) + mechanism
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(req)) + req)
            size = struct.unpack(">i", recv_exact(sock, 4))[0]
            resp = recv_exact(sock, size)
        got_corr, error_code = struct.unpack(">ih", resp[:6])
        return bool(got_corr == corr and error_code == 0)
    except (OSError, struct.error):
        return False
