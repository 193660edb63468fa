"""MqttBus against a real Mosquitto: the pub/sub contract plus reconnects and sessions."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from flbus.errors import BrokerUnavailableError, PublishError
from flbus.mqtt import MqttBus
from tests.contracts.pubsub import PubSubContract, drain, unique

pytestmark = pytest.mark.mqtt


class TestMqttBus(PubSubContract):
    @pytest.fixture
    async def bus(self, mqtt_url: str) -> AsyncIterator[MqttBus]:
        bus = MqttBus(mqtt_url)
        await bus.start()
        yield bus
        await bus.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"private mosquitto did not listen on {port}")


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A mosquitto of this test's own (so the test may kill it), on a free port."""
    exe = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true and mosquitto is not installed (apt-get install mosquitto)")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    procs: list[subprocess.Popen[bytes]] = []

    def launch() -> None:
        procs.append(subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.DEVNULL))
        _wait_port(port)

    launch()
    procs_holder = (port, procs)
    yield procs_holder
    for proc in procs:
        proc.terminate()
        proc.wait(5)


async def test_mqtt_start_on_dead_port_raises_broker_unavailable_naming_url() -> None:
    url = f"mqtt://127.0.0.1:{_free_port()}"
    bus = MqttBus(url, connect_timeout=1.5)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match=url):
        await bus.start()
    assert time.monotonic() - started < 5


async def test_mqtt_resubscribes_after_broker_restart(
    private_mosquitto: tuple[int, list[subprocess.Popen[bytes]]],
) -> None:
    port, procs = private_mosquitto
    url = f"mqtt://127.0.0.1:{port}"
    topic = unique() + "/restart"
    sub_bus = MqttBus(url, reconnect_delay=(0.05, 0.5))
    pub_bus = MqttBus(url, reconnect_delay=(0.05, 0.5))
    await sub_bus.start()
    await pub_bus.start()
    sub = await sub_bus.subscribe([topic])
    await pub_bus.publish(topic, b"before")
    assert [r.value for r in await drain(sub, 1)] == [b"before"]

    procs[0].kill()  # no persistence: the broker forgets every session
    procs[0].wait(5)
    await asyncio.sleep(0.3)
    procs.append(subprocess.Popen(procs[0].args, stderr=subprocess.DEVNULL))
    _wait_port(port)

    # Publishing waits for the reconnect; delivery needs the re-subscription.
    deadline = time.monotonic() + 15
    got = None
    while got is None and time.monotonic() < deadline:
        await pub_bus.publish(topic, b"after")
        got = await sub.get(0.5)
    assert got is not None and got.value == b"after"
    await sub_bus.stop()
    await pub_bus.stop()


async def test_mqtt_recovers_when_its_socket_is_dropped(mqtt_url: str) -> None:
    topic = unique() + "/drop"
    sub_bus = MqttBus(mqtt_url, reconnect_delay=(0.05, 0.5))
    pub_bus = MqttBus(mqtt_url)
    await sub_bus.start()
    await pub_bus.start()
    sub = await sub_bus.subscribe([topic])
    link = sub_bus._link  # the paho client under the bus
    sock = link._client.socket() if link else None
    assert sock is not None
    sock.shutdown(socket.SHUT_RDWR)  # as a NAT box or a flaky Wi-Fi would
    await asyncio.sleep(0.2)
    for i in range(3):  # the session keeps queueing QoS 1 messages meanwhile
        await pub_bus.publish(topic, b"%d" % i)
    records = await drain(sub, 3, timeout=15)
    assert sorted(r.value for r in records) == [b"0", b"1", b"2"]
    await sub_bus.stop()
    await pub_bus.stop()


async def test_mqtt_persistent_session_delivers_messages_sent_while_offline(
    mqtt_url: str,
) -> None:
    topic = unique() + "/offline"
    client_id = "flbus-test-" + uuid.uuid4().hex[:8]
    device = MqttBus(mqtt_url, client_id=client_id, session_expiry=30)
    await device.start()
    await (await device.subscribe([topic])).get(0.01)
    await device.stop()  # the broker keeps the session and its subscription

    async with MqttBus(mqtt_url) as sender:
        for i in range(3):
            await sender.publish(topic, b"%d" % i, headers=(("seq", b"%d" % i),))

    device = MqttBus(mqtt_url, client_id=client_id, session_expiry=0)  # ends it after use
    await device.start()
    sub = await device.subscribe([topic])
    records = await drain(sub, 3, timeout=10)
    assert [r.value for r in records] == [b"0", b"1", b"2"]
    assert [r.header("seq") for r in records] == [b"0", b"1", b"2"]
    assert not any(r.retained for r in records)
    assert await sub.get(0.3) is None
    await device.stop()


async def test_mqtt_two_local_members_of_a_share_group_split_messages(mqtt_url: str) -> None:
    topic = unique() + "/split"
    group = "g" + uuid.uuid4().hex[:8]
    async with MqttBus(mqtt_url) as bus:
        a = await bus.subscribe([topic], share_group=group)
        b = await bus.subscribe([topic], share_group=group)
        for i in range(20):
            await bus.publish(topic, b"%d" % i)
        got_a = await drain(a, 10)
        got_b = await drain(b, 10)
        values = sorted(int(r.value) for r in got_a + got_b)
        assert values == list(range(20))
        assert await a.get(0.2) is None and await b.get(0.2) is None


async def test_mqtt_second_subscriber_gets_retained_once_first_gets_no_replay(
    mqtt_url: str,
) -> None:
    topic = unique() + "/model"
    async with MqttBus(mqtt_url) as bus:
        await bus.publish(topic, b"v1", retain=True)
        first = await bus.subscribe([topic])
        [r1] = await drain(first, 1)
        second = await bus.subscribe([topic])
        [r2] = await drain(second, 1)
        assert r1.retained and r2.retained and r1.value == r2.value == b"v1"
        assert await first.get(0.3) is None  # no duplicate replay for the earlier one
        await bus.publish(topic, b"v2")
        assert (await drain(first, 1))[0].value == b"v2"
        assert (await drain(second, 1))[0].value == b"v2"
        await bus.publish(topic, b"", retain=True)


async def test_mqtt_non_utf8_header_is_refused(mqtt_url: str) -> None:
    async with MqttBus(mqtt_url) as bus:
        with pytest.raises(PublishError, match="UTF-8"):
            await bus.publish(unique() + "/h", b"x", headers=(("digest", b"\xff\xfe"),))


async def test_mqtt_overlapping_subscriptions_each_get_exactly_their_messages(
    mqtt_url: str,
) -> None:
    ns = unique()
    async with MqttBus(mqtt_url) as bus:
        everything = await bus.subscribe([f"{ns}/#"])
        await bus.publish(f"{ns}/x", b"1")  # before any overlap: no identifiers in use
        x_only = await bus.subscribe([f"{ns}/x"])
        shared = await bus.subscribe([f"{ns}/+"], share_group="g" + uuid.uuid4().hex[:6])
        await bus.publish(f"{ns}/x", b"2")
        await bus.publish(f"{ns}/y", b"3")
        assert [r.value for r in await drain(everything, 3)] == [b"1", b"2", b"3"]
        assert [r.value for r in await drain(x_only, 1)] == [b"2"]
        assert [r.value for r in await drain(shared, 2)] == [b"2", b"3"]
        for sub in (everything, x_only, shared):
            assert await sub.get(0.2) is None


async def test_mqtt_buses_share_the_loop_not_a_thread_each(mqtt_url: str) -> None:
    # A simulator process holds up to 250 devices, one bus each: no thread per device.
    import threading

    first = MqttBus(mqtt_url)
    await first.start()  # connecting may start the loop's few shared worker threads
    before = threading.active_count()
    buses = [MqttBus(mqtt_url) for _ in range(12)]
    for bus in buses:
        await bus.start()
    grown = threading.active_count() - before
    topic = unique() + "/loop"
    sub = await buses[0].subscribe([topic])
    await buses[-1].publish(topic, b"x")
    got = await sub.get(5)
    for bus in [first, *buses]:
        await bus.stop()
    assert got is not None and got.value == b"x"
    assert grown < 6, f"{grown} more threads for 12 more buses"


async def test_mqtt_notices_a_silent_broker_through_keepalive(
    private_mosquitto: tuple[int, list[subprocess.Popen[bytes]]],
) -> None:
    # A frozen broker keeps the socket open: only unanswered PINGREQs tell the link is dead.
    import signal

    port, procs = private_mosquitto
    bus = MqttBus(f"mqtt://127.0.0.1:{port}", keepalive=1, reconnect_delay=(0.05, 0.2))
    await bus.start()
    await asyncio.sleep(1.5)
    assert bus.connected  # idle for longer than the keepalive: pings keep it up
    procs[0].send_signal(signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 6
        while bus.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not bus.connected
    finally:
        procs[0].send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 10
    while not bus.connected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert bus.connected  # and it came back once the broker answered again
    await bus.stop()
