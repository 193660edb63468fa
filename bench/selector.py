"""Selector throughput: check-ins answered per second by one selector process.

    python -m bench.selector [--checkins 10000] [--repeat 2] [--mqtt URL] [--profile]
                             [--network-thread]

Over a real Mosquitto (a local one started through ``flctl.brokers`` on a free
port unless ``--mqtt``/``FL_MQTT_URL`` names one). Three processes: the
selector (``services.selector`` as deployed, on ``MqttBus``; its service plane
is an in-memory log holding one selecting plan with admission probability 1,
so every check-in is answered with a signed Task, forwarded and audited, and
Kafka's cost is left out), a flooder publishing valid check-ins at QoS 1 from
``--checkins`` distinct device ids of three hospitals, and a counter
subscribed to every device's task topic. The rate is answers received over
the time from the first check-in sent to the last answer received; ``per
CPU-s`` divides the answers by the selector process's CPU time (all its
threads), the figure other load on a shared machine disturbs least.

The reference, measured in the same run by the same flooder and counter, is
raw Mosquitto publish/subscribe: the same payloads on the same topic shapes,
from the flooder's paho client straight to the counter's. ``--profile`` runs
the selector under cProfile and prints its top functions. ``--network-thread``
also measures the selector on paho's own network thread (``MqttBus(...,
network_thread=True)``) beside the default asyncio-driven client.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import tempfile
import time
from contextlib import ExitStack
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

SECRET = b"bench-selector-secret-0123456789"
HOSPITALS = ("h0", "h1", "h2")
MODEL = "digits_mlp"
Q = "mp.Queue[Any]"


def _quiet() -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))


def _paho(url: str) -> Any:
    from urllib.parse import urlsplit

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    parts = urlsplit(url)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    sock = c.socket()
    if isinstance(sock, socket.socket):  # as MqttBus does: no Nagle stalls
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


# -- the three processes -------------------------------------------------------


def serve(url: str, ready: MpEvent, stop: MpEvent, out: Q, profile: bool, thread: bool) -> None:
    """The selector process: answer check-ins until ``stop``; put its counters on ``out``."""
    _quiet()
    if not profile:
        out.put(asyncio.run(_serve(url, ready, stop, thread)))
        return
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    stats = prof.runcall(asyncio.run, _serve(url, ready, stop, thread))
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats(
        os.environ.get("BENCH_PROFILE_SORT", "tottime")
    ).print_stats(30)
    out.put({**stats, "profile": text.getvalue()})


async def _serve(url: str, ready: MpEvent, stop: MpEvent, thread: bool) -> dict[str, int]:
    from flbus.memory import MemoryLog
    from flbus.mqtt import MqttBus
    from flproc.clock import wall_ms
    from schemas import RoundPlan, encode
    from schemas.topics import KAFKA_ROUND_PLANS
    from services.selector.app import build
    from services.selector.config import SelectorConfig

    now = wall_ms()
    plan = RoundPlan(
        model=MODEL, round_id=1, base_version=0, state="selecting", local_epochs=1,
        max_steps=0, batch_size=32, learning_rate=0.1, clip_norm=0.0, noise_multiplier=0.0,
        hospitals=HOSPITALS, targets=(10**6,) * 3, admission_probability=1.0,
        over_selection=1.3, min_fraction=0.5, opened_at_ms=now, deadline_ms=now + 3_600_000,
        reason="",
    )  # fmt: skip
    pubsub, log = MqttBus(url, max_inflight=1000, network_thread=thread), MemoryLog()
    await pubsub.start()
    await log.start()
    await log.publish(KAFKA_ROUND_PLANS, encode(plan), key=MODEL.encode())
    config = SelectorConfig(token_secret=SECRET, hospitals=HOSPITALS, stats_interval_s=3600.0)
    selector = build(config, pubsub, log, wall_ms)
    halt = asyncio.Event()
    task = asyncio.create_task(selector.run(halt))
    await selector.ready.wait()
    await asyncio.sleep(0.3)  # the SUBSCRIBE reaches the broker
    cpu = time.process_time()
    ready.set()
    while not stop.is_set():
        await asyncio.sleep(0.1)
    cpu = time.process_time() - cpu  # every thread of the process: loop and paho's
    halt.set()
    await task
    await pubsub.stop()
    await log.stop()
    return {**selector.stats, "cpu_s": cpu}


def count(url: str, topic_filter: str, ready: MpEvent, out: Q, idle_s: float) -> None:
    """The counter process: count messages on ``topic_filter`` until ``idle_s`` passes quiet."""
    from paho.mqtt.subscribeoptions import SubscribeOptions

    got, last = 0, 0.0

    def on_message(*_: object) -> None:
        nonlocal got, last
        got += 1
        last = time.monotonic()

    c = _paho(url)
    c.on_message = on_message
    c.on_subscribe = lambda *_: ready.set()
    c.loop_start()
    c.subscribe(topic_filter, options=SubscribeOptions(qos=1))
    t0 = time.monotonic()
    while True:
        time.sleep(idle_s / 4)
        quiet_since = last if got else t0 + 120  # nothing at all: give up after two minutes
        if time.monotonic() - quiet_since > idle_s:
            break
    c.disconnect()
    c.loop_stop()
    out.put((got, last))


def payloads(n: int) -> list[tuple[str, bytes]]:
    """``n`` valid check-ins (topic, bytes) from distinct devices of the three hospitals."""
    from schemas import CheckIn, encode
    from schemas.topics import checkin_topic

    now = int(time.time() * 1000)
    out = []
    for i in range(n):
        h, d = HOSPITALS[i % 3], f"dev{i:06d}"
        msg = CheckIn(d, h, (MODEL,), "1.19.2", "0.1", True, True, True, 80.0, 512, now)
        out.append((checkin_topic(h, d), encode(msg)))
    return out


def flood(url: str, root: str, n: int, go: MpEvent, out: Q, window: int) -> None:
    """The flooder process: publish ``n`` check-ins at QoS 1 under ``root``; put the start time."""
    msgs = [(root + topic.split("/", 2)[2], value) for topic, value in payloads(n)]
    c = _paho(url)
    c.loop_start()
    go.wait()
    start = time.monotonic()
    for i in range(0, n, window):
        infos = [c.publish(t, v, qos=1) for t, v in msgs[i : i + window]]
        for info in infos:
            info.wait_for_publish(60)
    sent = time.monotonic()
    c.disconnect()
    c.loop_stop()
    out.put((start, sent))


# -- driver --------------------------------------------------------------------


def run_case(
    url: str, n: int, selector: bool, profile: bool, thread: bool = False
) -> dict[str, Any]:
    """One measured case: through a selector, or raw from flooder to counter."""
    ctx = mp.get_context("spawn")
    q_count, q_flood, q_sel = ctx.Queue(), ctx.Queue(), ctx.Queue()
    counted, go, sel_ready, sel_stop = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Event()
    procs = []
    if selector:
        root, answers = "fl/v1/", "fl/v1/+/+/task"
        sel = ctx.Process(target=serve, args=(url, sel_ready, sel_stop, q_sel, profile, thread))
        procs.append(sel)
        sel.start()
        if not sel_ready.wait(60):
            raise RuntimeError("the selector did not become ready")
    else:
        root, answers = "bench/raw/", "bench/raw/+/+/checkin"
    counter = ctx.Process(target=count, args=(url, answers, counted, q_count, 2.0))
    flooder = ctx.Process(target=flood, args=(url, root, n, go, q_flood, 200))
    procs += [counter, flooder]
    counter.start()
    flooder.start()
    if not counted.wait(30):
        raise RuntimeError("the counter did not subscribe")
    time.sleep(0.2)
    go.set()
    start, sent = q_flood.get(timeout=300)
    got, last = q_count.get(timeout=300)
    stats: dict[str, Any] = {}
    if selector:
        sel_stop.set()
        stats = q_sel.get(timeout=60)
    for p in procs:
        p.join(30)
    seconds = max(last - start, 1e-9)
    return {"n": n, "got": got, "rate": got / seconds, "send_rate": n / (sent - start), **stats}


def _cpu_rate(r: dict[str, Any]) -> str:
    return f"{r['got'] / r['cpu_s']:>11,.0f}" if r.get("cpu_s") else f"{'':>11}"


def main(argv: list[str] | None = None) -> None:
    """Parse options, find or start Mosquitto, measure both cases ``--repeat`` times."""
    ap = argparse.ArgumentParser(
        prog="python -m bench.selector", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--mqtt", default=os.environ.get("FL_MQTT_URL"), help="mqtt://host:port")
    ap.add_argument("--checkins", type=int, default=10_000, help="check-ins per case")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="cProfile the selector process")
    ap.add_argument(
        "--network-thread", action="store_true", help="also measure paho's threaded client"
    )
    args = ap.parse_args(argv)
    with ExitStack() as stack:
        if args.mqtt:
            brokers = [("given broker", args.mqtt, args.checkins)]
        else:  # the stock broker saves per message: a tenth of the check-ins tells its rate
            brokers = [
                ("stock", _local_mosquitto(stack, per_message_save=True), args.checkins // 10),
                ("no save/msg", _local_mosquitto(stack, per_message_save=False), args.checkins),
            ]
        size = len(payloads(1)[0][1])
        print(f"check-ins of {size} bytes, QoS 1, loopback, one selector process")
        print(
            f"{'broker':<14}{'case':<18}{'answered':>9}{'msg/s':>9}{'sent/s':>9}{'vs raw':>8}"
            f"{'per CPU-s':>11}"
        )
        for rep in range(args.repeat):
            for label, url, n in brokers:
                raw = run_case(url, n, selector=False, profile=False)
                sel = run_case(url, n, selector=True, profile=args.profile and rep == 0)
                cases = [("raw pub/sub", raw), ("selector answers", sel)]
                if args.network_thread:
                    threaded = run_case(url, n, selector=True, profile=False, thread=True)
                    cases.append(("sel., paho thread", threaded))
                for name, r in cases:
                    share = f"{r['rate'] / raw['rate'] * 100:7.0f}%"
                    print(
                        f"{label:<14}{name:<18}{r['got']:>9}{r['rate']:>9,.0f}"
                        f"{r['send_rate']:>9,.0f}{share}{_cpu_rate(r)}",
                        flush=True,
                    )
                if "profile" in sel:
                    print(sel["profile"])


def suite_rows(quick: bool) -> list[dict[str, str]]:
    """Check-ins answered per second by one selector process beside raw pub/sub, for
    ``python -m bench`` (a Mosquitto saving periodically: the stock local one saves the
    database on every queued QoS 1 message and caps both at ~125 msg/s)."""
    n = 2_000 if quick else 10_000
    with ExitStack() as stack:
        url = _local_mosquitto(stack, per_message_save=False)
        raw = run_case(url, n, selector=False, profile=False)
        sel = run_case(url, n, selector=True, profile=False)
    per_cpu = f", {sel['got'] / sel['cpu_s']:,.0f} per selector CPU-s" if sel.get("cpu_s") else ""
    return [{
        "row": "selector: check-ins answered per s, one process",
        "figure": f"{sel['rate']:,.0f}/s ({sel['got']} of {n}){per_cpu}",
        "reference": f"raw Mosquitto pub/sub {raw['rate']:,.0f} msg/s",
        "note": f"target >= 5,000/s: {'PASS' if sel['rate'] >= 5_000 else 'FAIL'}",
    }]  # fmt: skip


def _local_mosquitto(stack: ExitStack, *, per_message_save: bool) -> str:
    """A Mosquitto from ``flctl.brokers``; without ``per_message_save``, its config saves
    the persistence file periodically instead of after every change (queued QoS 1
    messages count as changes, so every delivery wrote the database)."""
    from flctl.brokers import LocalBrokers, free_port

    root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-selector-")))
    local = LocalBrokers(
        mqtt_port=free_port(), kafka_port=free_port(), kafka_controller_port=free_port(),
        data_dir=root,
    )  # fmt: skip
    if not per_message_save:
        broker = local.mosquitto
        prepare = broker.prepare

        def periodic_save() -> None:
            prepare()
            text = broker.config.read_text()
            text = text.replace("autosave_on_changes true", "autosave_on_changes false")
            broker.config.write_text(
                text.replace("autosave_interval 1\n", "autosave_interval 30\n")
            )

        broker.prepare = periodic_save  # type: ignore[method-assign]
    endpoints = local.up(timeout=60, mqtt=True, kafka=False)
    stack.callback(local.down, mqtt=True, kafka=False)
    assert endpoints.mqtt_url is not None
    return endpoints.mqtt_url


if __name__ == "__main__":
    main()
