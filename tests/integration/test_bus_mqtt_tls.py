"""MqttBus over TLS (mqtts://) against a real Mosquitto with a throwaway CA.

A hospital's broker is reached over TLS and verified against the hospital's
CA; a broker whose certificate that CA did not sign must be refused.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flbus.errors import BrokerUnavailableError, BusError
from flbus.mqtt import MqttBus
from flctl.brokers import find_tool, free_port, mqtt_answers
from tests.conftest import _unavailable
from tests.contracts.pubsub import drain, unique

pytestmark = pytest.mark.mqtt


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca_and_server_cert(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", f"/CN={name} test CA", "-keyout", f"{name}-ca.key",
             "-out", f"{name}-ca.pem", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", f"{name}-server.key", "-out", f"{name}-server.csr", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", f"{name}-server.csr", "-CA", f"{name}-ca.pem",
             "-CAkey", f"{name}-ca.key", "-CAcreateserial", "-days", "2",
             "-extfile", "san.ext", "-out", f"{name}-server.pem", cwd=d)  # fmt: skip


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Path]]:
    """A Mosquitto with only a TLS listener; yields (port, its CA, another CA)."""
    mosquitto, openssl = find_tool("mosquitto"), find_tool("openssl")
    if mosquitto is None or openssl is None:
        _unavailable("mosquitto and openssl are needed for the TLS test")
    d = tmp_path_factory.mktemp("tls")
    _make_ca_and_server_cert(d, "hospital")
    _make_ca_and_server_cert(d, "other")
    port = free_port()
    conf = d / "mosquitto.conf"
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        f"cafile {d / 'hospital-ca.pem'}",
        f"certfile {d / 'hospital-server.pem'}",
        f"keyfile {d / 'hospital-server.key'}",
    ]
    if os.geteuid() == 0:
        lines.append("user root")  # else mosquitto drops to a user that cannot read tmp/
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([str(mosquitto), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not _port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                _unavailable(f"TLS mosquitto did not start: {err[-500:]}")
            time.sleep(0.05)
        assert not mqtt_answers(port)  # plain MQTT gets nowhere on a TLS listener
        yield port, d / "hospital-ca.pem", d / "other-ca.pem"
    finally:
        proc.terminate()
        proc.wait(10)


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_mqtts_publish_subscribe_verified_by_the_hospital_ca(
    tls_broker: tuple[int, Path, Path],
) -> None:
    port, ca, _ = tls_broker
    bus = MqttBus(f"mqtts://127.0.0.1:{port}?ca={ca}")
    await bus.start()
    topic = unique("tls") + "/a"
    sub = await bus.subscribe([topic])
    await bus.publish(topic, b"over tls", headers=(("k", b"v"),))
    [record] = await drain(sub, 1)
    assert record.value == b"over tls" and record.header("k") == b"v"
    await sub.close()
    await bus.stop()


async def test_mqtts_refuses_a_broker_the_ca_did_not_sign(
    tls_broker: tuple[int, Path, Path],
) -> None:
    port, _, other_ca = tls_broker
    bus = MqttBus(f"mqtts://127.0.0.1:{port}?ca={other_ca}", connect_timeout=3)
    with pytest.raises(BrokerUnavailableError, match=f"mqtts://127.0.0.1:{port}"):
        await bus.start()


def test_mqtt_url_rules() -> None:
    with pytest.raises(BusError, match="mqtt\\[s\\]://"):
        MqttBus("http://broker:1883")
    with pytest.raises(BusError, match="unexpected query"):
        MqttBus("mqtt://broker:1883?ca=/x.pem")  # a CA without TLS is a mistake
    assert MqttBus("mqtts://broker").client_id  # default port 8883, nothing connects yet
