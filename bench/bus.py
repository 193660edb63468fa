"""Bus throughput: each adapter beside its raw client library, measured in one run.

``python -m bench.bus [--mqtt URL] [--kafka BOOTSTRAP] [--dispatch-only]``
(defaults: ``FL_MQTT_URL`` / ``FL_KAFKA_BOOTSTRAP``; else local brokers through
``flctl.brokers`` on free ports, stopped at the end). First, the in-memory
bus's dispatch cost against the number of subscriptions (``bench.bus_dispatch``).

Every case is publish-and-consume end to end on loopback: a subscriber is
ready first, then ``n`` messages are published in windows of ``--window``
(each window waits until every publish in it is acknowledged: PUBACK at QoS 1
for MQTT, ``acks=all`` on an idempotent producer for Kafka), and the clock
stops when the subscriber has received the last message. The raw side uses
the client library directly with the same settings: paho's threaded loop
with ``wait_for_publish`` and an ``on_message`` counter; aiokafka with
``send_and_wait`` gathered per window (``raw-futs``: its ``send`` futures) and
a ``getmany`` loop. Overhead is the adapter's time over ``raw-*``. Each case
runs ``--repeat`` times, alternating raw and adapter, and the best run counts.
``CPU us/msg`` is this process's CPU time (every thread) per message: the
client-side cost, which other load on the machine disturbs less than wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

SIZES = {"4KiB": (4 * 1024, 5000), "512KiB": (512 * 1024, 200)}


Timing = tuple[float, float]  # wall seconds, CPU seconds of this process (all threads)


def _clock() -> Timing:
    return time.perf_counter(), time.process_time()


def _since(start: Timing) -> Timing:
    return time.perf_counter() - start[0], time.process_time() - start[1]


@dataclass
class Result:
    """One measured case."""

    plane: str
    impl: str
    size: str
    n: int
    nbytes: int
    seconds: float
    cpu: float

    def line(self, raw: Result | None) -> str:
        """A table row; the overheads compare wall and CPU time with ``raw``."""
        rate = self.n / self.seconds
        mbps = self.n * self.nbytes / self.seconds / 1e6
        cpu_us = self.cpu / self.n * 1e6
        over = ""
        if raw is not None:
            over = (
                f"{(self.seconds / raw.seconds - 1) * 100:+8.1f}%"
                f"{(self.cpu / raw.cpu - 1) * 100:+8.1f}%"
            )
        return (
            f"{self.plane:<7}{self.impl:<10}{self.size:>7}{self.n:>7}"
            f"{rate:>11,.0f}{mbps:>10,.1f}{cpu_us:>10,.0f}{over}"
        )


# -- MQTT ------------------------------------------------------------------------


def raw_paho(url: str, n: int, payload: bytes, window: int, inflight: int) -> Timing:
    """Seconds for ``n`` QoS 1 messages through bare paho (threaded loops)."""
    from urllib.parse import urlsplit

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    from paho.mqtt.subscribeoptions import SubscribeOptions

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    topic = f"bench/raw/{uuid.uuid4().hex[:8]}"
    got = 0
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal got
        got += 1
        if got == n:
            done.set()

    subscribed = threading.Event()
    clients = []
    for role in ("sub", "pub"):
        c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        c.max_inflight_messages_set(inflight)
        if role == "sub":
            c.on_message = on_message
            c.on_subscribe = lambda *_: subscribed.set()
        c.connect(host, port)
        sock = c.socket()
        if isinstance(sock, socket.socket):  # as MqttBus does: no Nagle stalls
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.loop_start()
        clients.append(c)
    sub, pub = clients
    sub.subscribe(topic, options=SubscribeOptions(qos=1))
    subscribed.wait(10)
    start = _clock()
    for i in range(0, n, window):
        infos = [pub.publish(topic, payload, qos=1) for _ in range(min(window, n - i))]
        for info in infos:
            info.wait_for_publish(30)
    if not done.wait(60):
        raise RuntimeError(f"raw paho: {got} of {n} arrived")
    seconds = _since(start)
    for c in clients:
        c.disconnect()
        c.loop_stop()
    return seconds


async def adapter_pubsub(make: Callable[[], object], n: int, payload: bytes, window: int) -> Timing:
    """Seconds for ``n`` messages through a PubSubBus (MqttBus or MemoryPubSub)."""
    from flbus.port import PubSubBus

    bus = make()
    assert isinstance(bus, PubSubBus)
    await bus.start()
    topic = f"bench/adapter/{uuid.uuid4().hex[:8]}"
    sub = await bus.subscribe([topic])

    async def consume() -> None:
        for _ in range(n):
            if await sub.get(60) is None:
                raise RuntimeError("adapter: a message did not arrive")

    start = _clock()
    consumer = asyncio.ensure_future(consume())
    for i in range(0, n, window):
        await asyncio.gather(*[bus.publish(topic, payload) for _ in range(min(window, n - i))])
    await consumer
    seconds = _since(start)
    await bus.stop()
    return seconds


# -- Kafka -----------------------------------------------------------------------


async def raw_aiokafka(
    bootstrap: str, n: int, payload: bytes, window: int, futures: bool = False
) -> Timing:
    """Seconds for ``n`` records through bare aiokafka (idempotent, acks=all).

    By default each window gathers ``send_and_wait`` calls, the shape a
    ``LogBus.publish`` caller has; ``futures`` gathers ``send`` futures instead,
    aiokafka's own pipelining, which a per-call awaitable port cannot express.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        max_request_size=1_048_576,
        max_batch_size=1_048_576,
    )
    await producer.start()
    await producer.send_and_wait(topic, b"warm-up")  # creates the topic
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="latest",
        max_partition_fetch_bytes=1_048_576,
    )
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    await consumer.position(tp)

    async def consume() -> None:
        got = 0
        while got < n:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for _record in records:  # touch each, as the adapter hands each out
                    got += 1

    start = _clock()
    task = asyncio.ensure_future(consume())
    for i in range(0, n, window):
        k = min(window, n - i)
        if futures:
            await asyncio.gather(*[await producer.send(topic, payload) for _ in range(k)])
        else:
            await asyncio.gather(*[producer.send_and_wait(topic, payload) for _ in range(k)])
    await asyncio.wait_for(task, 60)
    seconds = _since(start)
    await consumer.stop()
    await producer.stop()
    return seconds


async def adapter_log(make: Callable[[], object], n: int, payload: bytes, window: int) -> Timing:
    """Seconds for ``n`` records through a LogBus (KafkaBus or MemoryLog)."""
    from flbus.port import LogBus

    bus = make()
    assert isinstance(bus, LogBus)
    await bus.start()
    topic = f"bench.adapter.{uuid.uuid4().hex[:8]}"
    await bus.create_topic(topic)
    sub = await bus.subscribe([topic], start="latest")

    async def consume() -> None:
        for _ in range(n):
            if await sub.get(60) is None:
                raise RuntimeError("adapter: a record did not arrive")

    start = _clock()
    consumer = asyncio.ensure_future(consume())
    for i in range(0, n, window):
        await asyncio.gather(*[bus.publish(topic, payload) for _ in range(min(window, n - i))])
    await consumer
    seconds = _since(start)
    await bus.stop()
    return seconds


# -- driver ----------------------------------------------------------------------


def measure(args: argparse.Namespace, mqtt_url: str | None, kafka: str | None) -> None:
    """Run every case and print the table."""
    from flbus.kafka import KafkaBus
    from flbus.memory import MemoryLog, MemoryPubSub
    from flbus.mqtt import MqttBus

    w, inflight = args.window, args.inflight
    print(f"window={w} inflight={inflight} repeat={args.repeat} (best run), loopback")
    print(
        f"{'plane':<7}{'impl':<10}{'size':>7}{'msgs':>7}{'msg/s':>11}{'MB/s':>10}"
        f"{'CPU us/msg':>11}{'wall':>8}{'CPU':>9} vs raw"
    )

    for size, (nbytes, n) in SIZES.items():
        n = max(1, int(n * args.scale))
        payload = os.urandom(nbytes)

        def row(plane: str, impl: str, times: list[Timing], raw: Result | None = None) -> Result:
            wall, cpu = min(t[0] for t in times), min(t[1] for t in times)
            result = Result(plane, impl, size, n, nbytes, wall, cpu)  # noqa: B023
            print(result.line(raw), flush=True)
            return result

        reps = range(args.repeat)
        row(
            "memory",
            "pubsub",
            [asyncio.run(adapter_pubsub(MemoryPubSub, n, payload, w)) for _ in reps],
        )
        row("memory", "log", [asyncio.run(adapter_log(MemoryLog, n, payload, w)) for _ in reps])
        if mqtt_url:
            url = mqtt_url
            raw_t, ad_t = [], []
            for _ in reps:
                raw_t.append(raw_paho(url, n, payload, w, inflight))
                mqtt_bus = functools.partial(MqttBus, url, max_inflight=inflight)
                ad_t.append(asyncio.run(adapter_pubsub(mqtt_bus, n, payload, w)))
            raw = row("mqtt", "raw-paho", raw_t)
            row("mqtt", "MqttBus", ad_t, raw)
        if kafka:
            boot = kafka
            raw_t, fut_t, ad_t = [], [], []
            for _ in reps:
                raw_t.append(asyncio.run(raw_aiokafka(boot, n, payload, w)))
                fut_t.append(asyncio.run(raw_aiokafka(boot, n, payload, w, futures=True)))
                kafka_bus = functools.partial(KafkaBus, boot)
                ad_t.append(asyncio.run(adapter_log(kafka_bus, n, payload, w)))
            raw = row("kafka", "raw-aiok", raw_t)
            row("kafka", "raw-futs", fut_t, raw)
            row("kafka", "KafkaBus", ad_t, raw)


def main(argv: list[str] | None = None) -> None:
    """Parse options, find or start brokers, measure."""
    ap = argparse.ArgumentParser(prog="python -m bench.bus", description=__doc__.split("\n")[0])
    ap.add_argument("--mqtt", default=os.environ.get("FL_MQTT_URL"), help="mqtt://host:port")
    ap.add_argument("--kafka", default=os.environ.get("FL_KAFKA_BOOTSTRAP"), help="host:port")
    ap.add_argument("--window", type=int, default=64, help="publishes in flight per window")
    ap.add_argument("--inflight", type=int, default=100, help="paho max in-flight QoS 1")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    ap.add_argument("--no-local", action="store_true", help="never start local brokers")
    ap.add_argument("--dispatch-only", action="store_true", help="only the in-memory dispatch")
    args = ap.parse_args(argv)
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    from bench import bus_dispatch

    bus_dispatch.measure(repeat=min(args.repeat, 3), scale=args.scale)
    if args.dispatch_only:
        return
    with ExitStack() as stack:
        mqtt_url, kafka = args.mqtt, args.kafka
        if not (mqtt_url and kafka) and not args.no_local:
            mqtt_url, kafka = _local_brokers(stack, mqtt_url, kafka)
        measure(args, mqtt_url, kafka)


def _local_brokers(
    stack: ExitStack, mqtt_url: str | None, kafka: str | None
) -> tuple[str | None, str | None]:
    try:
        from flctl.brokers import LocalBrokers, free_port
    except ImportError:
        return mqtt_url, kafka
    want_mqtt, want_kafka = mqtt_url is None, kafka is None
    root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-bus-")))
    local = LocalBrokers(
        mqtt_port=free_port(),
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        data_dir=root,
    )
    endpoints = local.up(timeout=120, mqtt=want_mqtt, kafka=want_kafka)
    stack.callback(local.down, mqtt=want_mqtt, kafka=want_kafka)
    return mqtt_url or endpoints.mqtt_url, kafka or endpoints.kafka_bootstrap


if __name__ == "__main__":
    main()
