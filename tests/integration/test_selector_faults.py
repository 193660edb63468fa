"""Selector faults on a real Mosquitto: broker crash, a replica killed, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from flbus.kafka import KafkaBus
from flbus.memory import MemoryLog
from flbus.mqtt import MqttBus
from flbus.port import Record
from flproc.clock import wall_ms
from schemas import CheckIn, ModelVersion, RoundPlan, Task, Tensors, decode, encode
from schemas.artifacts import ArtifactBundle
from schemas.topics import (
    KAFKA_ARTIFACTS,
    KAFKA_MODEL_VERSIONS,
    KAFKA_ROUND_PLANS,
    checkin_topic,
    plan_topic,
    task_topic,
)
from services.common.streams import publish_log_chunked
from services.selector.app import build
from services.selector.config import SelectorConfig
from tests.support.mosquitto import OwnMosquitto

pytestmark = pytest.mark.mqtt

SECRET = b"selector-faults-secret"


def _plan(model: str, hospital: str) -> RoundPlan:
    now = wall_ms()
    return RoundPlan(
        model, 1, 0, "selecting", 1, 0, 32, 0.1, 0.0, 0.0, (hospital,), (2,),
        1.0, 1.3, 0.5, now, now + 600_000, "",
    )  # fmt: skip


def _checkin(hospital: str, device: str, model: str) -> CheckIn:
    return CheckIn(device, hospital, (model,), "1.19.2", "0.1", True, True, True, 90.0, 512, 0)


async def _retained(url: str, topic_filter: str, want: int, timeout: float = 10.0) -> list[Record]:
    """What a fresh device subscribing now finds retained under ``topic_filter``."""
    async with MqttBus(url) as device:
        sub = await device.subscribe([topic_filter])
        found: dict[str, Record] = {}
        deadline = time.monotonic() + timeout
        while len(found) < want and (left := deadline - time.monotonic()) > 0:
            record = await sub.get(timeout=left)
            if record is not None and record.retained:
                found[record.topic] = record
        return list(found.values())


async def test_mosquitto_keeps_retained_messages_across_a_kill_9(tmp_path: Path) -> None:
    broker = OwnMosquitto(tmp_path)
    broker.start()
    try:
        async with MqttBus(broker.url) as bus:
            await bus.publish("fl/v1/models/m/plan", b"the plan", retain=True)
        await asyncio.sleep(1.5)  # autosave_interval 1: at most a second of changes at risk
        broker.kill()
        broker.start()
        [found] = await _retained(broker.url, "fl/v1/models/m/plan", 1)
        assert found.value == b"the plan"
    finally:
        broker.kill()


async def test_selector_republishes_retained_state_when_the_broker_lost_it(
    tmp_path: Path,
) -> None:
    broker = OwnMosquitto(tmp_path)
    broker.start()
    log = MemoryLog()
    await log.start()
    plan = _plan("digits", "h0")
    await log.publish(KAFKA_ROUND_PLANS, encode(plan), key=b"digits")
    tensors = Tensors.from_dict({"w": np.ones(3000, dtype=np.float32)})
    version = ModelVersion("digits", 1, 0, 0, 1, (), (), "art1", tensors)
    await publish_log_chunked(log, KAFKA_MODEL_VERSIONS, version, stream_id="v1",
                              key=b"digits", max_chunk_bytes=4096)  # fmt: skip
    bundle = ArtifactBundle.pack("digits", "art1", {"training_model.onnx": b"x" * 5000})
    await publish_log_chunked(log, KAFKA_ARTIFACTS, bundle, stream_id="art1",
                              key=b"digits", max_chunk_bytes=4096)  # fmt: skip
    stop = asyncio.Event()
    pubsub = MqttBus(broker.url, client_id="sel-0", session_expiry=0, reconnect_delay=(0.1, 0.5))
    try:
        async with pubsub:
            selector = build(SelectorConfig(token_secret=SECRET), pubsub, log, wall_ms)
            run = asyncio.create_task(selector.run(stop))
            async with asyncio.timeout(20):
                await selector.ready.wait()
            retained = len(selector.retained)
            assert retained > 3  # plan, version chunks, artifact chunks
            broker.kill()
            broker.wipe()  # the crash took its data with it
            broker.start()
            async with asyncio.timeout(20):
                while selector.stats["retained.republished"] < retained:
                    await asyncio.sleep(0.05)
            found = await _retained(broker.url, "fl/v1/models/digits/#", retained)
            assert {r.topic for r in found} == set(selector.retained)
            [p] = [r for r in found if r.topic == plan_topic("digits")]
            assert decode(p.value, RoundPlan) == plan
            stop.set()
            await asyncio.wait_for(run, 10)
    finally:
        broker.kill()
        await log.stop()


def _selector_process(
    mqtt_url: str, kafka: str, group: str, replica: str, hospital: str, health: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FL_TOKEN_SECRET": SECRET.decode(),
        "FL_HEALTH_FILE": str(health),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    cmd = [sys.executable, "-m", "flctl.main", "selector", "--mqtt-url", mqtt_url,
           "--kafka-bootstrap", kafka, "--share-group", group, "--replica-id", replica,
           "--hospitals", hospital, "--log-format", "json"]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


async def _until_ready(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    assert proc.stdout is not None
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        while True:
            line = await loop.run_in_executor(None, proc.stdout.readline)
            if not line:
                raise AssertionError(f"selector exited with {proc.wait()} before ready")
            if b"selector.ready" in line:
                return


async def test_killed_replica_does_not_black_hole_checkins(
    mqtt_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    model, hospital, group = f"m{tag}", f"h{tag}", f"sel{tag}"
    async with KafkaBus(kafka_bootstrap) as kafka:
        await kafka.publish(KAFKA_ROUND_PLANS, encode(_plan(model, hospital)), key=model.encode())
    procs = [
        _selector_process(
            mqtt_url, kafka_bootstrap, group, f"{group}-{i}", hospital, tmp_path / f"health{i}"
        )
        for i in range(2)
    ]
    try:
        await asyncio.gather(*(_until_ready(p) for p in procs))
        procs[0].kill()  # SIGKILL: no DISCONNECT, no goodbye
        procs[0].wait(10)
        devices = [f"d{i}" for i in range(20)]
        async with MqttBus(mqtt_url) as phone:
            answers = await phone.subscribe([task_topic(hospital, "x").replace("/x/", "/+/")])
            sent = time.monotonic()
            for device in devices:
                await phone.publish(
                    checkin_topic(hospital, device), encode(_checkin(hospital, device, model))
                )
            answered: set[str] = set()
            while len(answered) < len(devices):
                record = await answers.get(timeout=max(0.1, 5.0 - (time.monotonic() - sent)))
                if record is None:
                    break
                answered.add(decode(record.value, Task).device_id)
        assert answered == set(devices), f"unanswered: {sorted(set(devices) - answered)}"
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


async def test_selector_process_exits_soon_after_sigterm_with_its_broker_hung(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    model = f"m{uuid.uuid4().hex[:8]}"
    async with KafkaBus(kafka_bootstrap) as kafka:
        await kafka.publish(KAFKA_ROUND_PLANS, encode(_plan(model, "h0")), key=model.encode())
    broker = OwnMosquitto(tmp_path)
    broker.start()
    proc = _selector_process(broker.url, kafka_bootstrap, "selterm", "selterm-0", "h0",
                             tmp_path / "health")  # fmt: skip
    try:
        await _until_ready(proc)
        assert (tmp_path / "health").exists()
        async with MqttBus(broker.url) as phone:
            assert broker.proc is not None
            broker.proc.send_signal(signal.SIGSTOP)  # hung: connections open, no PUBACK ever
            try:
                # Queued by our client; delivered (and answered into the void) once it wakes.
                publishing = asyncio.create_task(
                    phone.publish(checkin_topic("h0", "d1"), encode(_checkin("h0", "d1", model)))
                )
                broker.proc.send_signal(signal.SIGCONT)
                await asyncio.wait_for(publishing, 5)
                await asyncio.sleep(0.05)
                broker.proc.send_signal(signal.SIGSTOP)
                await asyncio.sleep(1.0)  # the Task's publish now waits for its PUBACK
                proc.send_signal(signal.SIGTERM)
                started = time.monotonic()
                code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
                took = time.monotonic() - started
            finally:
                broker.proc.send_signal(signal.SIGCONT)
        assert took < 5.0, f"exit {code} took {took:.1f}s after SIGTERM"
    finally:
        proc.kill()
        proc.wait(10)
        broker.kill()
