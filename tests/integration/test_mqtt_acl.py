"""The device plane locked down: a real Mosquitto started from ``flctl provision`` output.

What an attacker on the network tried (issue 9): read everyone's tasks and
uploads anonymously, publish as another device, forge plans, models and tasks.
Each test ends with a message that *is* allowed on the same connection, so
"nothing arrived" is checked against something that did.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from flbus.errors import BrokerUnavailableError, BusError
from flbus.mqtt import MqttBus
from flbus.port import Record, Subscription
from flctl.provision.credentials import with_credentials
from schemas import topics
from tests.conftest import _unavailable
from tests.support.secure_mqtt import BrokerError, SecureMqtt, secure_mosquitto

pytestmark = pytest.mark.mqtt

A, B = "h0-d0", "h0-d1"  # two devices of hospital h0
OTHER = "h1-d0"  # a device of another hospital
MODEL = "acl-model"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureMqtt]:
    try:
        with secure_mosquitto(tmp_path_factory.mktemp("secure-mqtt")) as running:
            yield running
    except BrokerError as exc:
        _unavailable(f"a secured Mosquitto could not be started: {exc}")


async def _bus(url: str, client_id: str | None = None) -> MqttBus:
    bus = MqttBus(url, client_id=client_id, connect_timeout=5, publish_timeout=5)
    await bus.start()
    return bus


@pytest.fixture
async def selector(broker: SecureMqtt) -> AsyncIterator[MqttBus]:
    bus = await _bus(broker.selector_url())
    yield bus
    await bus.stop()


@pytest.fixture
async def device_a(broker: SecureMqtt) -> AsyncIterator[MqttBus]:
    bus = await _bus(broker.device_url(A))
    yield bus
    await bus.stop()


@pytest.fixture
async def device_b(broker: SecureMqtt) -> AsyncIterator[MqttBus]:
    bus = await _bus(broker.device_url(B))
    yield bus
    await bus.stop()


async def _until(sub: Subscription, last: bytes, timeout: float = 5.0) -> list[bytes]:
    """Every payload up to and including ``last`` (the allowed message sent after the rest)."""
    got: list[bytes] = []
    while not got or got[-1] != last:
        record: Record | None = await sub.get(timeout)
        if record is None:
            pytest.fail(f"the allowed message {last!r} never arrived; got {got}")
        got.append(record.value)
    return got


async def test_anonymous_and_wrong_password_clients_are_refused(broker: SecureMqtt) -> None:
    for url in (broker.url, with_credentials(broker.url, broker.devices[A].username, "guess")):
        bus = MqttBus(url, connect_timeout=2)
        with pytest.raises(BrokerUnavailableError, match="Not authorized"):
            await bus.start()
        await bus.stop()


async def test_device_cannot_publish_as_another_device(
    broker: SecureMqtt, selector: MqttBus, device_a: MqttBus
) -> None:
    sub = await selector.subscribe(
        [f"{topics.MQTT_ROOT}/+/+/{leaf}" for leaf in (topics.CHECKIN, topics.UPLOAD, topics.EVAL)],
        share_group=topics.SHARED_GROUP,  # as the selectors subscribe
    )
    for victim in (B, OTHER):
        hospital = victim.split("-")[0]
        for topic in (topics.checkin_topic, topics.upload_topic, topics.eval_topic):
            with pytest.raises(BusError, match="Not authorized"):
                await device_a.publish(topic(hospital, victim), b"forged")
    await device_a.publish(topics.checkin_topic("h0", A), b"own check-in")
    assert await _until(sub, b"own check-in") == [b"own check-in"]


async def test_device_cannot_read_another_devices_task(
    selector: MqttBus, device_a: MqttBus, device_b: MqttBus
) -> None:
    snooping = await device_a.subscribe([topics.task_topic("h0", B), topics.task_topic("h0", A)])
    own = await device_b.subscribe([topics.task_topic("h0", B)])
    await selector.publish(topics.task_topic("h0", B), b"token for B")
    await selector.publish(topics.task_topic("h0", A), b"token for A")
    assert await _until(snooping, b"token for A") == [b"token for A"]
    assert await _until(own, b"token for B") == [b"token for B"]


async def test_device_taking_over_anothers_session_gets_none_of_its_tasks(
    broker: SecureMqtt, selector: MqttBus
) -> None:
    # B's persistent session (client id = device id) holds a task queued while B is away.
    b = await _bus(broker.device_url(B), client_id=B)
    await b.subscribe([topics.task_topic("h0", B)])
    await b.stop()
    await selector.publish(topics.task_topic("h0", B), b"queued token for B")
    thief = await _bus(broker.device_url(A), client_id=B)
    try:
        sub = await thief.subscribe([topics.task_topic("h0", B), topics.task_topic("h0", A)])
        await selector.publish(topics.task_topic("h0", A), b"token for A")
        assert await _until(sub, b"token for A") == [b"token for A"]
    finally:
        await thief.stop()


async def test_device_cannot_publish_plans_models_artifacts_or_tasks(
    broker: SecureMqtt, selector: MqttBus, device_a: MqttBus, device_b: MqttBus
) -> None:
    models = await selector.subscribe([f"{topics.MQTT_ROOT}/models/#"])
    tasks = await device_b.subscribe([topics.task_topic("h0", B)])
    forged = {
        topics.plan_topic(MODEL): True,
        topics.model_manifest_topic(MODEL): True,
        topics.model_chunk_topic(MODEL, 1): True,
        topics.artifact_topic(MODEL, 7, "training_model", 0): True,
        topics.task_topic("h0", B): False,
        topics.task_topic("h0", A): False,
    }
    for topic, retain in forged.items():
        with pytest.raises(BusError, match="Not authorized"):
            await device_a.publish(topic, b"forged", retain=retain)
    await selector.publish(topics.plan_topic(MODEL), b"genuine plan", retain=True)
    await selector.publish(topics.task_topic("h0", B), b"genuine task")
    assert await _until(models, b"genuine plan") == [b"genuine plan"]
    assert await _until(tasks, b"genuine task") == [b"genuine task"]
    # And nothing forged was retained for devices that subscribe later.
    late = await _bus(broker.device_url(OTHER))
    try:
        retained = await late.subscribe([f"{topics.MQTT_ROOT}/models/{MODEL}/#"])
        assert await _until(retained, b"genuine plan") == [b"genuine plan"]
    finally:
        await late.stop()


async def test_device_checks_in_uploads_and_reads_its_task_and_the_plan(
    selector: MqttBus, device_a: MqttBus
) -> None:
    await selector.publish(topics.plan_topic("own-model"), b"plan", retain=True)
    plans = await device_a.subscribe([f"{topics.MQTT_ROOT}/models/own-model/#"])
    assert await _until(plans, b"plan") == [b"plan"]
    inbox = await selector.subscribe(
        [f"{topics.MQTT_ROOT}/+/+/{leaf}" for leaf in (topics.CHECKIN, topics.UPLOAD, topics.EVAL)],
        share_group=topics.SHARED_GROUP,
    )
    for topic in (topics.checkin_topic, topics.upload_topic, topics.eval_topic):
        await device_a.publish(topic("h0", A), topic.__name__.encode())
    got = await _until(inbox, b"eval_topic")
    assert got == [b"checkin_topic", b"upload_topic", b"eval_topic"]
    task = await device_a.subscribe([topics.task_topic("h0", A)])
    await selector.publish(topics.task_topic("h0", A), b"task")
    assert await _until(task, b"task") == [b"task"]


def test_secure_broker_directory_must_hold_the_acl(tmp_path: Path) -> None:
    from flctl.brokers import LocalBrokers, free_port

    (tmp_path / "secrets").mkdir()
    brokers = LocalBrokers(free_port(), data_dir=tmp_path / "b", secure=tmp_path / "secrets")
    with pytest.raises(BrokerError, match="run `flctl provision`"):
        brokers.up(timeout=5, kafka=False)


async def test_tls_listener_serves_the_provisioned_certificate(tmp_path: Path) -> None:
    try:
        with secure_mosquitto(tmp_path, tls=True) as tls:
            selector = await _bus(tls.selector_url())  # mqtts, verified with tls/ca.pem
            device = await _bus(tls.device_url(A))
            try:
                sub = await selector.subscribe([topics.checkin_topic("h0", A)])
                await device.publish(topics.checkin_topic("h0", A), b"over tls")
                assert await _until(sub, b"over tls") == [b"over tls"]
            finally:
                await device.stop()
                await selector.stop()
            for url in (tls.url, tls.device_url(A).split("?")[0]):  # anonymous; no private CA
                refused = MqttBus(url, connect_timeout=2)
                with pytest.raises(BrokerUnavailableError):
                    await refused.start()
                await refused.stop()
    except BrokerError as exc:
        _unavailable(f"a secured Mosquitto could not be started: {exc}")
