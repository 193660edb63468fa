"""The contract every PubSubBus keeps: run against MemoryPubSub and Mosquitto.

A subclass provides the ``bus`` fixture (a started bus) and, for buses that
deliver asynchronously, may raise ``settle`` (seconds to let a subscription
reach the broker).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from flbus.errors import BusClosedError, TopicError
from flbus.port import PubSubBus, Record, Subscription


def unique(prefix: str = "t") -> str:
    """A topic namespace no other test run uses."""
    return f"contract/{prefix}-{uuid.uuid4().hex[:10]}"


async def drain(sub: Subscription, n: int, timeout: float = 5.0) -> list[Record]:
    """Read ``n`` records or fail naming how many arrived."""
    out: list[Record] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(out) < n:
        record = await sub.get(max(0.0, deadline - loop.time()))
        if record is None:
            pytest.fail(f"expected {n} records, got {len(out)} before the timeout")
        out.append(record)
    return out


class PubSubContract:
    """Behaviour the device plane relies on."""

    settle: float = 0.0

    async def subscribed(
        self, bus: PubSubBus, filters: list[str], share_group: str | None = None
    ) -> Subscription:
        sub = await bus.subscribe(filters, share_group=share_group)
        if self.settle:
            await asyncio.sleep(self.settle)
        return sub

    async def test_publish_delivers_exact_bytes_and_headers(self, bus: PubSubBus) -> None:
        topic = unique() + "/a"
        sub = await self.subscribed(bus, [topic])
        payload = bytes(range(256)) * 2048  # 512 KiB with every byte value, zeros included
        await bus.publish(topic, payload, headers=(("kind", b"update"), ("v", b"1")))
        [record] = await drain(sub, 1)
        assert record.value == payload
        assert ("kind", b"update") in record.headers and record.header("v") == b"1"
        assert record.topic == topic and not record.retained
        await sub.close()

    async def test_messages_from_one_publisher_arrive_in_order(self, bus: PubSubBus) -> None:
        topic = unique() + "/seq"
        sub = await self.subscribed(bus, [topic])
        for i in range(50):
            await bus.publish(topic, str(i).encode())
        records = await drain(sub, 50)
        assert [int(r.value) for r in records] == list(range(50))
        await sub.close()

    async def test_wildcard_filters_match_levels(self, bus: PubSubBus) -> None:
        ns = unique()
        sub_plus = await self.subscribed(bus, [f"{ns}/+/checkin"])
        sub_hash = await self.subscribed(bus, [f"{ns}/h1/#"])
        await bus.publish(f"{ns}/h0/checkin", b"a")
        await bus.publish(f"{ns}/h1/d1/upload", b"b")
        await bus.publish(f"{ns}/h1/checkin", b"c")
        plus = await drain(sub_plus, 2)
        hashed = await drain(sub_hash, 2)
        assert [r.value for r in plus] == [b"a", b"c"]
        assert [r.value for r in hashed] == [b"b", b"c"]
        assert await sub_plus.get(0.3) is None
        await sub_plus.close()
        await sub_hash.close()

    async def test_retained_message_reaches_late_subscriber(self, bus: PubSubBus) -> None:
        topic = unique() + "/model"
        await bus.publish(topic, b"v1", retain=True)
        await bus.publish(topic, b"v2", retain=True)
        sub = await self.subscribed(bus, [topic])
        [record] = await drain(sub, 1)
        assert record.value == b"v2" and record.retained
        assert await sub.get(0.3) is None
        await sub.close()

    async def test_empty_retained_payload_clears_it(self, bus: PubSubBus) -> None:
        topic = unique() + "/model"
        await bus.publish(topic, b"v1", retain=True)
        await bus.publish(topic, b"", retain=True)
        sub = await self.subscribed(bus, [topic])
        assert await sub.get(0.5) is None
        await sub.close()

    async def test_shared_subscription_delivers_each_message_once(self, bus: PubSubBus) -> None:
        topic = unique() + "/checkin"
        group = "g" + uuid.uuid4().hex[:8]
        a = await self.subscribed(bus, [topic], share_group=group)
        b = await self.subscribed(bus, [topic], share_group=group)
        for i in range(40):
            await bus.publish(topic, str(i).encode())
        got: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while len(got) < 40 and loop.time() < deadline:
            for sub in (a, b):
                record = await sub.get(0.05)
                if record is not None:
                    got.append(record.value)
        assert sorted(int(v) for v in got) == list(range(40))
        await a.close()
        await b.close()

    async def test_get_times_out_with_none(self, bus: PubSubBus) -> None:
        sub = await self.subscribed(bus, [unique() + "/quiet"])
        assert await sub.get(0.2) is None
        await sub.close()

    async def test_closed_subscription_ends_iteration(self, bus: PubSubBus) -> None:
        sub = await self.subscribed(bus, [unique() + "/x"])
        await sub.close()
        with pytest.raises(BusClosedError):
            await sub.get(0.1)
        assert [r async for r in sub] == []

    async def test_bad_topics_are_refused(self, bus: PubSubBus) -> None:
        with pytest.raises(TopicError):
            await bus.publish("a/+/b", b"x")
        with pytest.raises(TopicError):
            await bus.subscribe(["a/#/b"])

    async def test_two_subscribers_to_one_filter_both_receive_until_closed(
        self, bus: PubSubBus
    ) -> None:
        topic = unique() + "/twice"
        first = await self.subscribed(bus, [topic])
        second = await self.subscribed(bus, [topic])
        await bus.publish(topic, b"a")
        assert [r.value for r in await drain(first, 1)] == [b"a"]
        assert [r.value for r in await drain(second, 1)] == [b"a"]
        await first.close()
        await bus.publish(topic, b"b")  # closing one must not unsubscribe the other
        assert [r.value for r in await drain(second, 1)] == [b"b"]
        await second.close()

    async def test_hash_matches_the_parent_level(self, bus: PubSubBus) -> None:
        ns = unique()
        sub = await self.subscribed(bus, [f"{ns}/a/#"])
        await bus.publish(f"{ns}/a", b"parent")
        await bus.publish(f"{ns}/ab", b"sibling")
        await bus.publish(f"{ns}/a/b/c", b"deep")
        assert [r.value for r in await drain(sub, 2)] == [b"parent", b"deep"]
        assert await sub.get(0.3) is None
        await sub.close()

    async def test_plus_at_the_root_matches_one_level(self, bus: PubSubBus) -> None:
        ns = unique()  # contract/<id>
        level = ns.split("/")[1]
        sub = await self.subscribed(bus, [f"+/{level}/leaf"])
        await bus.publish(f"{ns}/leaf", b"a")
        await bus.publish(f"{ns}/leaf/more", b"too deep")
        await bus.publish(f"x/{ns}/leaf", b"too deep at the root")
        assert [r.value for r in await drain(sub, 1)] == [b"a"]
        assert await sub.get(0.3) is None
        await sub.close()

    async def test_dollar_topics_escape_root_wildcards(self, bus: PubSubBus) -> None:
        level = unique().split("/")[1]
        topic = f"$contract/{level}/leaf"
        wild = await self.subscribed(bus, [f"+/{level}/leaf"])
        exact = await self.subscribed(bus, [topic])
        deeper = await self.subscribed(bus, [f"$contract/{level}/#"])
        await bus.publish(topic, b"dollar")
        await bus.publish(f"contract/{level}/leaf", b"plain")
        assert [r.value for r in await drain(wild, 1)] == [b"plain"]
        assert [r.value for r in await drain(exact, 1)] == [b"dollar"]
        assert [r.value for r in await drain(deeper, 1)] == [b"dollar"]
        assert await wild.get(0.3) is None
        for sub in (wild, exact, deeper):
            await sub.close()

    async def test_one_filter_listed_twice_delivers_once(self, bus: PubSubBus) -> None:
        ns = unique()
        sub = await self.subscribed(bus, [f"{ns}/+/x", f"{ns}/+/x"])
        await bus.publish(f"{ns}/a/x", b"once")
        assert [r.value for r in await drain(sub, 1)] == [b"once"]
        assert await sub.get(0.3) is None
        await sub.close()

    async def test_closing_a_wildcard_subscriber_keeps_the_others(self, bus: PubSubBus) -> None:
        ns = unique()
        group = "g" + uuid.uuid4().hex[:8]
        gone = await self.subscribed(bus, [f"{ns}/+/x"])
        kept = await self.subscribed(bus, [f"{ns}/+/x"])
        member = await self.subscribed(bus, [f"{ns}/+/x"], share_group=group)
        await gone.close()
        await bus.publish(f"{ns}/a/x", b"after")
        assert [r.value for r in await drain(kept, 1)] == [b"after"]
        assert [r.value for r in await drain(member, 1)] == [b"after"]
        await kept.close()
        await member.close()
        again = await self.subscribed(bus, [f"{ns}/+/x"])  # filter gone everywhere, then back
        await bus.publish(f"{ns}/b/x", b"back")
        assert [r.value for r in await drain(again, 1)] == [b"back"]
        await again.close()
