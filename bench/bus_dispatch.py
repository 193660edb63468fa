"""In-memory dispatch: publish cost against the number of subscriptions.

Part of ``python -m bench.bus`` (alone: ``python -m bench.bus --dispatch-only``).
Each device holds the subscriptions a real one makes (its task topic, and for
its model the plan, the current version, version chunks and artifacts), and
the selectors hold their shared check-in, upload and eval filters. One publish
is a Task to one device, the selector's commonest output. ``MemoryPubSub``
(filter index and trie) runs beside the old linear scan, which tested every
subscription's filters on every publish, over the same subscriptions in the
same run.
"""

from __future__ import annotations

import asyncio
import time

from device_sdk.routes import topic_filters
from flbus.memory import MemoryPubSub, _PubSubSub
from flbus.mqtt_match import check_topic, matches
from flbus.port import Headers, Record
from schemas.topics import CHECKIN, EVAL, MQTT_ROOT, UPLOAD, task_topic

COUNTS = (30, 1_000, 3_000)
MODEL = "digits_mlp"


class LinearPubSub(MemoryPubSub):
    """The reference: the in-memory bus as it was, scanning every subscription per publish."""

    async def publish(
        self, topic: str, value: bytes, *, headers: Headers = (), retain: bool = False
    ) -> None:
        check_topic(topic)
        record = Record(topic=topic, value=bytes(value), headers=tuple(headers))
        shared: dict[tuple[str, str], list[_PubSubSub]] = {}
        for sub in self._subs:
            flt = next((f for f in sub.filters if matches(f, topic)), None)
            if flt is None:
                continue
            if sub.share_group is None:
                sub.queue.put_nowait(record)
            else:
                shared.setdefault((sub.share_group, flt), []).append(sub)
        for group_key, members in shared.items():
            turn = self._share_turn.get(group_key, 0)
            members[turn % len(members)].queue.put_nowait(record)
            self._share_turn[group_key] = turn + 1


def _device(i: int) -> tuple[str, str]:
    return f"h{i % 3}", f"d{i}"


async def _publish_cost(bus: MemoryPubSub, devices: int, n: int) -> float:
    """Microseconds per Task publish on ``bus`` holding ``devices`` device subscriptions."""
    await bus.start()
    subs = [
        await bus.subscribe([f"{MQTT_ROOT}/+/+/{leaf}" for leaf in (CHECKIN, UPLOAD, EVAL)],
                            share_group="selectors")
        for _ in range(2)
    ]  # fmt: skip
    for i in range(devices):
        subs.append(await bus.subscribe(topic_filters(*_device(i), [MODEL])))
    topics = [task_topic(*_device(i)) for i in range(devices)]
    payload = b"x" * 200
    start = time.perf_counter()
    for k in range(n):
        await bus.publish(topics[k % devices], payload)
    seconds = time.perf_counter() - start
    await bus.stop()
    return seconds / n * 1e6


def measure(repeat: int = 3, scale: float = 1.0) -> None:
    """Print publish cost per subscription count, index beside the linear scan."""
    print("in-memory dispatch: one Task publish, best of", repeat)
    print(f"{'devices':>8}{'subs':>8}{'index us':>11}{'linear us':>11}{'speed-up':>10}")
    for devices in COUNTS:
        best = {}
        for make, budget in ((MemoryPubSub, 5_000 * devices), (LinearPubSub, 300_000)):
            n = max(30, int(budget * scale / devices))  # the linear scan gets fewer publishes
            best[make] = min(asyncio.run(_publish_cost(make(), devices, n)) for _ in range(repeat))
        index, linear = best[MemoryPubSub], best[LinearPubSub]
        subs = devices + 2
        print(f"{devices:>8}{subs:>8}{index:>11.1f}{linear:>11.1f}{linear / index:>9.1f}x")
