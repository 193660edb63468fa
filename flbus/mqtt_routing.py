"""Which local subscription of an :class:`~flbus.mqtt.MqttBus` gets a delivered message.

Each ``subscribe`` is one SUBSCRIBE. A subscription whose filters overlap no
other one of this bus is routed by topic alone. When filters overlap (the same
filter twice, a shared and a plain one, ``a/#`` and ``a/b``) both SUBSCRIBEs
carry an MQTT v5 subscription identifier, which the broker echoes on each
delivery: that tells a shared copy from a plain one, and sends a retained
replay (retain flag set, since retain-as-published is off) only to the
subscription that asked for it. Identifiers are kept small and only used where
needed because paho re-slices the whole payload for every byte of every
property it decodes. Messages the broker queued in a resumed session before
anything subscribed in this process are kept (bounded) and handed to the first
subscription whose filters match.

Everything here runs on the event loop's thread and knows nothing of paho:
:class:`Router` holds the tables, :class:`MqttSubscription` is what
``subscribe`` returns.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from flbus.errors import BusClosedError
from flbus.mqtt_match import matches
from flbus.port import Record, Subscription

log = structlog.get_logger("flbus.mqtt")


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(eq=False)
class MqttSubscription(Subscription):
    """One ``subscribe`` call: its filters, its identifiers and its inbox."""

    filters: tuple[str, ...]
    broker_filters: tuple[str, ...]  # with the ``$share/{group}/`` prefix when shared
    shared: bool
    on_close: Callable[[MqttSubscription], None]  # the bus unsubscribes
    ids: list[int] = field(default_factory=list)
    plain: bool = False  # subscribed without identifier (overlaps no other subscription)
    # A deque and one future instead of asyncio.Queue + wait_for: no task and
    # no timer per message on the receive path.
    buf: deque[Record] = field(default_factory=deque)
    waiter: asyncio.Future[None] | None = None
    closed: bool = False

    def put(self, record: Record) -> None:
        """Loop thread: hand ``record`` to the reader."""
        self.buf.append(record)
        if self.waiter is not None:
            _wake(self.waiter)

    async def get(self, timeout: float | None = None) -> Record | None:
        if self.closed:
            raise BusClosedError("subscription closed")
        if not self.buf:
            loop = asyncio.get_running_loop()
            waiter = self.waiter
            if waiter is None or waiter.done():
                waiter = self.waiter = loop.create_future()
            timer = None if timeout is None else loop.call_later(timeout, _wake, waiter)
            try:
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()
                if self.waiter is waiter:
                    self.waiter = None
            if self.closed:
                raise BusClosedError("subscription closed")
            if not self.buf:
                return None
        return self.buf.popleft()

    async def close(self) -> None:
        """Unsubscribe from the broker (when no other local subscriber shares the filter)."""
        if not self.closed:
            self.end()
            self.on_close(self)

    def end(self) -> None:
        """Stop delivering; a reader waiting in ``get`` gets BusClosedError."""
        if not self.closed:
            self.closed = True
            if self.waiter is not None:
                _wake(self.waiter)


def filters_overlap(a: str, b: str) -> bool:
    """Whether some topic matches both MQTT filters."""
    la, lb = a.split("/"), b.split("/")
    for x, y in zip(la, lb, strict=False):
        if x == "#" or y == "#":
            return True
        if x != y and "+" not in (x, y):
            return False
    return len(la) == len(lb) or "#" in (la[len(lb)] if len(la) > len(lb) else lb[len(la)])


def _overlap(a: MqttSubscription, b: MqttSubscription) -> bool:
    """Whether the broker could deliver one message for both subscriptions."""
    return any(filters_overlap(x, y) for x in a.filters for y in b.filters)


class Router:
    """The routing tables of one bus; see the module docstring."""

    def __init__(self, max_orphans: int) -> None:
        """Keep at most ``max_orphans`` messages that arrive before a matching subscribe."""
        self.subs: list[MqttSubscription] = []
        # Small identifiers: paho re-slices the whole payload once per byte of
        # each property it decodes, so a 1-byte identifier is cheapest.
        self._next_id = itertools.count(1)
        self._free_ids: list[int] = []
        self._id_sub: dict[int, MqttSubscription] = {}  # identifier -> its subscription
        self._filter_subs: dict[str, list[MqttSubscription]] = {}  # broker filter -> local subs
        self._turn: dict[str, int] = {}  # round robin over local members of a shared filter
        self._orphans: deque[tuple[Record, tuple[int, ...]]] = deque(maxlen=max_orphans)

    def add(self, sub: MqttSubscription) -> list[MqttSubscription]:
        """Route to ``sub`` from now on; return the other subscriptions it overlaps."""
        self.subs.append(sub)
        for bf in sub.broker_filters:
            self._filter_subs.setdefault(bf, []).append(sub)
        self._adopt_orphans(sub)
        return [s for s in self.subs if s is not sub and _overlap(s, sub)]

    def identify(self, sub: MqttSubscription, with_id: bool) -> int | None:
        """Before a SUBSCRIBE of ``sub``: a new identifier for it if ``with_id``, else None."""
        sub_id = None
        if with_id:
            sub_id = heapq.heappop(self._free_ids) if self._free_ids else next(self._next_id)
            sub.ids.append(sub_id)
            self._id_sub[sub_id] = sub
        sub.plain = not sub.ids
        return sub_id

    def remove(self, sub: MqttSubscription) -> list[str]:
        """Stop routing to ``sub``; return the broker filters no local subscription holds now."""
        if sub in self.subs:
            self.subs.remove(sub)
        for sub_id in sub.ids:
            if self._id_sub.pop(sub_id, None) is not None:
                heapq.heappush(self._free_ids, sub_id)
        gone = []
        for bf in sub.broker_filters:
            members = self._filter_subs.get(bf, [])
            if sub in members:
                members.remove(sub)
            if not members:
                self._filter_subs.pop(bf, None)
                gone.append(bf)
        return gone

    def end_all(self) -> None:
        """End every subscription (the bus stops)."""
        for sub in list(self.subs):
            sub.end()
        self.subs.clear()

    def deliver(self, record: Record, ids: tuple[int, ...]) -> None:
        """Hand ``record`` (with the subscription identifiers it came with) to its readers."""
        targets: list[MqttSubscription] = []
        if not ids:  # from a subscription without identifier: it overlaps no other
            for plain in self.subs:
                if plain.plain and any(matches(f, record.topic) for f in plain.filters):
                    targets.append(plain)
        for sub_id in ids:
            sub = self._id_sub.get(sub_id)
            if sub is None:
                continue
            if record.retained:  # a replay for exactly this SUBSCRIBE
                if sub not in targets and any(matches(f, record.topic) for f in sub.filters):
                    targets.append(sub)
                continue
            for flt, bf in zip(sub.filters, sub.broker_filters, strict=True):
                if not matches(flt, record.topic):
                    continue
                members: Sequence[MqttSubscription] = self._filter_subs.get(bf, ())
                if sub.shared and members:
                    turn = self._turn.get(bf, 0)
                    self._turn[bf] = turn + 1
                    members = (members[turn % len(members)],)
                for member in members:
                    if member not in targets:
                        targets.append(member)
        if not targets:
            # From a subscription of an earlier life of this session (its
            # identifier unknown or since reused), or a broker without
            # identifiers: any local subscriber whose filters match.
            targets = [s for s in self.subs if any(matches(f, record.topic) for f in s.filters)]
        if not targets:
            if len(self._orphans) == self._orphans.maxlen:
                log.warning("mqtt.orphan_dropped", topic=self._orphans[0][0].topic)
            self._orphans.append((record, ids))
            return
        for sub in targets:
            sub.put(record)

    def _adopt_orphans(self, sub: MqttSubscription) -> None:
        """Hand session messages that arrived before any subscription to ``sub``."""
        if not self._orphans:
            return
        kept: deque[tuple[Record, tuple[int, ...]]] = deque(maxlen=self._orphans.maxlen)
        for record, ids in self._orphans:
            if any(matches(f, record.topic) for f in sub.filters):
                sub.put(record)
            else:
                kept.append((record, ids))
        self._orphans = kept
