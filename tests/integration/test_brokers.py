"""The local broker launcher (``flctl brokers``) and smoke tests of the broker fixtures."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flctl.brokers import (
    LocalBrokers,
    PortInUse,
    ToolMissing,
    find_tool,
    free_port,
    mqtt_answers,
)
from flctl.main import main


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[LocalBrokers]:
    """A launcher on free ports in a fresh data dir; whatever it started is stopped after."""
    lines: list[str] = []
    brokers = LocalBrokers(
        free_port(),
        free_port(),
        tmp_path / "data",
        kafka_controller_port=free_port(),
        progress=lines.append,
    )
    brokers.lines = lines  # type: ignore[attr-defined]
    yield brokers
    brokers.down(grace=10)


def _need(tool: str) -> None:
    if find_tool(tool) is None:
        message = f"{tool} not installed (scripts/test installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.mqtt
def test_up_twice_starts_one_mosquitto(launcher: LocalBrokers) -> None:
    _need("mosquitto")
    first = launcher.up(timeout=30, kafka=False)
    pid = launcher.status()[0].pid

    second = launcher.up(timeout=30, kafka=False)

    assert first == second
    assert launcher.status()[0].pid == pid
    assert any("already running" in line for line in launcher.lines)  # type: ignore[attr-defined]


@pytest.mark.mqtt
def test_status_reports_state_port_and_pid(launcher: LocalBrokers) -> None:
    _need("mosquitto")
    port = launcher.mosquitto.port
    assert launcher.status()[0].state == "stopped"

    launcher.up(timeout=30, kafka=False)
    running = launcher.status()[0]
    launcher.down(kafka=False)
    stopped = launcher.status()[0]

    assert (running.state, running.port) == ("running", port)
    assert running.pid is not None and f"pid {running.pid}" in running.line()
    assert (stopped.state, stopped.pid) == ("stopped", None)
    assert not mqtt_answers(port)


@pytest.mark.mqtt
def test_down_leaves_a_foreign_process_on_the_recorded_pid_alone(launcher: LocalBrokers) -> None:
    # Prepare: the broker died and its pid now belongs to an unrelated process.
    foreign = subprocess.Popen(["sleep", "60"])
    state = launcher.mosquitto.state_file
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"pid": foreign.pid, "port": launcher.mosquitto.port}))
    try:
        lines = launcher.down(kafka=False)

        assert foreign.poll() is None, "down killed a process it did not start"
        assert "not ours" in lines[0]
        assert not state.exists()
    finally:
        foreign.kill()
        foreign.wait()


@pytest.mark.mqtt
def test_down_and_up_leave_a_mosquitto_started_elsewhere_alone(
    launcher: LocalBrokers, tmp_path: Path
) -> None:
    _need("mosquitto")
    port = launcher.mosquitto.port
    conf = tmp_path / "foreign.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    foreign = subprocess.Popen(
        [str(find_tool("mosquitto")), "-c", str(conf)], stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(50):
            if mqtt_answers(port):
                break
            time.sleep(0.1)
        with pytest.raises(PortInUse, match=str(port)):
            launcher.up(timeout=10, kafka=False)
        launcher.down()

        assert foreign.poll() is None
        assert mqtt_answers(port)
    finally:
        foreign.terminate()
        foreign.wait()


@pytest.mark.unit
def test_up_without_mosquitto_names_it_and_how_to_install(tmp_path: Path) -> None:
    brokers = LocalBrokers(free_port(), data_dir=tmp_path, search_path=str(tmp_path / "empty"))

    with pytest.raises(ToolMissing) as error:
        brokers.up(timeout=5, kafka=False)

    assert str(error.value).startswith("mosquitto not found")
    assert "apt-get install mosquitto" in str(error.value)


@pytest.mark.unit
def test_up_without_java_names_it_and_how_to_install(tmp_path: Path) -> None:
    brokers = LocalBrokers(
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        data_dir=tmp_path,
        search_path=str(tmp_path / "empty"),
    )

    with pytest.raises(ToolMissing, match=r"java not found: apt-get install openjdk-17"):
        brokers.up(timeout=5, mqtt=False)


@pytest.mark.unit
def test_up_without_jars_or_mvn_names_maven(tmp_path: Path) -> None:
    java = find_tool("java")
    if java is None:
        pytest.skip("java not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to(java)
    brokers = LocalBrokers(
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        data_dir=tmp_path / "data",
        kafka_cache=tmp_path / "empty-cache",
        search_path=str(bin_dir),
    )

    with pytest.raises(ToolMissing, match=r"mvn not found: apt-get install maven"):
        brokers.up(timeout=5, mqtt=False)


@pytest.mark.unit
def test_cli_status_on_a_fresh_data_dir_says_stopped_and_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "brokers",
            "status",
            "--data-dir",
            str(tmp_path),
            "--mqtt-port",
            "18999",
            "--kafka-port",
            "19998",
        ]
    )

    out = capsys.readouterr().out
    assert code == 3
    assert "mosquitto  stopped  port 18999" in out
    assert "kafka      stopped  port 19998" in out


@pytest.mark.kafka
def test_kafka_up_is_idempotent_and_down_stops_it(launcher: LocalBrokers) -> None:
    _need("java")
    first = launcher.up(timeout=120, mqtt=False)
    pid = launcher.status()[1].pid

    second = launcher.up(timeout=120, mqtt=False)
    running = launcher.status()[1]
    lines = launcher.down(mqtt=False)

    assert first == second and first.kafka_bootstrap == f"127.0.0.1:{launcher.kafka.port}"
    assert (running.state, running.pid) == ("running", pid)
    assert lines == [f"kafka stopped (pid {pid})"]
    assert launcher.status()[1].state == "stopped"


# --- smoke tests of the session fixtures -------------------------------------


async def test_kafka_round_trip_with_idempotent_producer_and_group_commit(
    kafka_bootstrap: str,
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic, group = f"smoke-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"update", key=b"h0", headers=[("v", b"1")])
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        got = await asyncio.wait_for(consumer.getone(), timeout=60)
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(topic, sent.partition))
    finally:
        await consumer.stop()

    assert (got.key, got.value, list(got.headers)) == (b"h0", b"update", [("v", b"1")])
    assert committed == sent.offset + 1


def test_mqtt_v5_publish_subscribe_round_trip(mqtt_url: str) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    host, port = mqtt_url.removeprefix("mqtt://").rsplit(":", 1)
    topic = f"fl/v1/smoke/{uuid.uuid4().hex[:8]}"
    received: list[mqtt.MQTTMessage] = []
    subscribed, arrived = threading.Event(), threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received.append(msg)
        arrived.set()

    clients = []
    for name in ("sub", "pub"):
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"smoke-{name}-{topic}",
            protocol=mqtt.MQTTv5,
        )
        client.connect(host, int(port))
        client.loop_start()
        clients.append(client)
    sub, pub = clients
    sub.on_message = on_message
    sub.on_subscribe = lambda *args: subscribed.set()
    try:
        sub.subscribe(topic, qos=1)
        assert subscribed.wait(10)
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("schema", "checkin/1")]
        pub.publish(topic, b"hello", qos=1, properties=props).wait_for_publish(10)

        assert arrived.wait(10)
    finally:
        for client in clients:
            client.loop_stop()
            client.disconnect()
    assert received[0].payload == b"hello"
    assert received[0].qos == 1
    assert received[0].properties.UserProperty == [("schema", "checkin/1")]
