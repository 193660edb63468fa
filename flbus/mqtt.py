"""The device plane on a real MQTT v5 broker: :class:`MqttBus` on paho-mqtt 2.x.

Threads: paho's network thread (``loop_start``) does all socket I/O, keepalive
and reconnects with backoff. Its callbacks only append to one inbox; the first
append after a drain schedules one ``call_soon_threadsafe``, so a burst of acks
and messages costs one wake-up of the asyncio loop, not one each. Every future,
queue and routing table is touched on the loop thread only.

Routing: each ``subscribe`` is one SUBSCRIBE. A subscription whose filters
overlap no other one of this bus is routed by topic alone. When filters
overlap (the same filter twice, a shared and a plain one, ``a/#`` and ``a/b``)
both SUBSCRIBEs carry an MQTT v5 subscription identifier, which the broker
echoes on each delivery: that tells a shared copy from a plain one, and sends
a retained replay (retain flag set, since retain-as-published is off) only to
the subscription that asked for it. Identifiers are kept small and only used
where needed because paho re-slices the whole payload for every byte of every
property it decodes. Messages the broker queued in a resumed session before
anything subscribed in this process are kept (bounded) and handed to the first
subscription whose filters match.

Sessions: ``clean_start`` is always False with a session expiry. With an
explicit ``client_id`` the session outlives ``stop()`` (the broker keeps the
subscriptions and queues QoS 1 messages until the same id connects again);
with a generated id ``stop()`` ends the session. ``Subscription.close()``
unsubscribes; ``stop()`` does not.

Limits: a publish is one MQTT packet. Mosquitto's default ``max_packet_size``
allows 256 MiB (the protocol's ceiling is 268,435,455 bytes); when the broker
announces a smaller Maximum Packet Size in CONNACK, bigger publishes raise
PublishError before anything is sent. Our chunks are at most 512 KiB. Header
values travel as MQTT v5 user properties, which are UTF-8 strings: a header
value that is not UTF-8 raises PublishError.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import secrets
import socket
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import structlog
from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from flbus.errors import (
    BrokerUnavailableError,
    BusClosedError,
    BusError,
    PublishError,
    TopicError,
)
from flbus.mqtt_match import check_filter, check_topic, matches
from flbus.port import Headers, PubSubBus, Record, Subscription

log = structlog.get_logger(__name__)

_MAX_PACKET = 268_435_455  # MQTT's largest remaining length
_PACKET_OVERHEAD = 64  # fixed header, lengths, packet id, property framing


# -- the one place where paho's errors become flbus errors --------------------


def _error(what: str, rc: MQTTErrorCode | ReasonCode | int | BaseException) -> BusError:
    """Translate a paho return code, reason code or exception into a BusError."""
    if isinstance(rc, BusError):
        return rc
    if isinstance(rc, ReasonCode):
        text = f"{what}: broker answered {rc} (0x{rc.value:02x})"
        if rc.value in (0x8F, 0x90, 0x9E, 0xA1, 0xA2):  # bad filter/topic, shared/ids unsupported
            return TopicError(text)
        if rc.value in (0x95, 0x97):  # packet too large, quota exceeded
            return PublishError(text)
        return BusError(text)
    if isinstance(rc, MQTTErrorCode):
        if rc in (MQTTErrorCode.MQTT_ERR_NO_CONN, MQTTErrorCode.MQTT_ERR_CONN_LOST):
            return BrokerUnavailableError(f"{what}: not connected ({rc.name})")
        if rc in (MQTTErrorCode.MQTT_ERR_QUEUE_SIZE, MQTTErrorCode.MQTT_ERR_PAYLOAD_SIZE):
            return PublishError(f"{what}: {rc.name}")
        return BusError(f"{what}: {rc.name}")
    if isinstance(rc, ValueError):
        return TopicError(f"{what}: {rc}") if "opic" in str(rc) else PublishError(f"{what}: {rc}")
    if isinstance(rc, OSError):
        return BrokerUnavailableError(f"{what}: {rc}")
    return BusError(f"{what}: {rc!r}")


@contextmanager
def _mapped(what: str) -> Iterator[None]:
    """Raise paho's exceptions as BusErrors."""
    try:
        yield
    except BusError:
        raise
    except (ValueError, OSError) as exc:
        raise _error(what, exc) from exc


def _properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def _check_rc(what: str, rc: MQTTErrorCode) -> None:
    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
        raise _error(what, rc)


# -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Url:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool
    ca_file: str | None  # a private CA bundle (the hospital's PKI); None: the system's
    safe: str  # for messages: no password

    @classmethod
    def parse(cls, url: str) -> _Url:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise BusError(
                "MQTT URL must look like mqtt[s]://[user:pass@]host[:port][?ca=/path/ca.pem], "
                f"got {url!r}"
            )
        tls = parts.scheme == "mqtts"
        port = parts.port or (8883 if tls else 1883)
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        query = parse_qs(parts.query)
        unknown = sorted(set(query) - {"ca"})
        if unknown or (query and not tls):
            what = unknown or list(query)
            raise BusError(
                f"MQTT URL {parts.scheme}://{parts.hostname}: unexpected query parameters {what}"
            )
        ca = query.get("ca", [None])[-1]
        safe = f"{parts.scheme}://{parts.hostname}:{port}"
        return cls(parts.hostname, port, user, password, tls, ca, safe)


class MqttBus(PubSubBus):
    """PubSubBus on an MQTT v5 broker (QoS 1, retained, shared, persistent sessions)."""

    def __init__(
        self,
        url: str,
        *,
        client_id: str | None = None,
        session_expiry: int = 3600,
        keepalive: int = 30,
        connect_timeout: float = 10.0,
        publish_timeout: float | None = 60.0,
        reconnect_delay: tuple[float, float] = (0.1, 30.0),
        max_inflight: int = 100,
        max_orphans: int = 10_000,
    ) -> None:
        """Configure the bus; nothing connects before ``start()``.

        Parameters
        ----------
        url:
            ``mqtt://host:port`` or ``mqtt://user:pass@host:port`` (port 1883 if
            omitted); ``mqtts://`` for TLS (port 8883), verifying the broker
            against the system's CAs or ``?ca=/path/ca.pem``.
        client_id:
            The MQTT client id; give a stable one to resume the session (and its
            queued QoS 1 messages) across restarts. None generates one whose
            session ends with ``stop()``.
        session_expiry:
            Seconds the broker keeps the session after a disconnect.
        keepalive:
            Seconds between pings; a dead link is noticed after 1.5 times this.
        connect_timeout:
            Seconds ``start()`` keeps trying before BrokerUnavailableError.
        publish_timeout:
            Seconds ``publish()`` waits for PUBACK (across reconnects) before
            PublishError; None waits for ever. The message may still be delivered.
        reconnect_delay:
            First and longest wait between reconnect attempts (doubling).
        max_inflight:
            Unacknowledged QoS 1 publishes on the wire; more wait in paho's queue.
        max_orphans:
            Messages of a resumed session kept until a matching subscribe.
        """
        self._url = _Url.parse(url)
        self._ephemeral = client_id is None
        self.client_id = client_id or f"flbus-{secrets.token_hex(8)}"
        self._session_expiry = session_expiry
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self._publish_timeout = publish_timeout
        self._reconnect_delay = reconnect_delay
        self._max_inflight = max_inflight
        self._max_packet = _MAX_PACKET  # until CONNACK says otherwise
        self._orphans: deque[tuple[Record, tuple[int, ...]]] = deque(maxlen=max_orphans)

        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Client | None = None
        self._inbox: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._drain_scheduled = False
        self._started = False
        self._closed = False
        self._connected = asyncio.Event()
        self._first_connect: asyncio.Future[None] | None = None
        self._acks: dict[int, tuple[asyncio.Future[None], float, str]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._subacks: dict[int, asyncio.Future[list[ReasonCode]]] = {}

        # Routing tables; see the module docstring.
        # Small identifiers: paho re-slices the whole payload once per byte of
        # each property it decodes, so a 1-byte identifier is cheapest.
        self._next_id = itertools.count(1)
        self._free_ids: list[int] = []
        self._subs: list[_MqttSub] = []
        self._id_sub: dict[int, _MqttSub] = {}  # subscription identifier -> its subscription
        self._filter_subs: dict[str, list[_MqttSub]] = {}  # broker filter -> local subscribers
        self._turn: dict[str, int] = {}  # round robin over local members of a shared filter

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Connect; raises BrokerUnavailableError naming the URL after ``connect_timeout``."""
        if self._closed:
            raise BusClosedError("this MqttBus was stopped; make a new one")
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._first_connect = self._loop.create_future()
        client = Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=True,
        )
        if self._url.username is not None:
            client.username_pw_set(self._url.username, self._url.password)
        if self._url.tls:
            # Verifies the broker's certificate and host name (system CAs, or ?ca=).
            with _mapped(f"TLS set-up for {self._url.safe}"):
                client.tls_set(ca_certs=self._url.ca_file)
        client.max_inflight_messages_set(self._max_inflight)
        client.reconnect_delay_set(*self._reconnect_delay)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_socket_open = _no_delay
        props = _properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._session_expiry
        with _mapped(f"connect to {self._url.safe}"):
            client.connect_async(
                self._url.host,
                self._url.port,
                keepalive=self._keepalive,
                clean_start=False,
                properties=props,
            )
        self._client = client
        client.loop_start()
        try:
            await asyncio.wait_for(asyncio.shield(self._first_connect), self._connect_timeout)
        except (TimeoutError, BusError) as exc:
            await self._shutdown_client(session_end=True)
            self._client = None
            reason = "" if isinstance(exc, TimeoutError) else f": {exc}"
            raise BrokerUnavailableError(
                f"no MQTT broker answered at {self._url.safe} "
                f"within {self._connect_timeout:g}s{reason}"
            ) from None
        self._started = True
        self._sweep()

    async def stop(self) -> None:
        """Disconnect; local subscriptions end, the broker session follows ``client_id``."""
        if self._closed:
            return
        self._closed = True
        for sub in list(self._subs):
            sub._end()
        self._subs.clear()
        if self._client is not None:
            await self._shutdown_client(session_end=self._ephemeral)
        if self._sweeper is not None:
            self._sweeper.cancel()
        pending = [entry[0] for entry in self._acks.values()] + list(self._subacks.values())
        for fut in pending:
            if not fut.done():
                fut.set_exception(BusClosedError("the MQTT bus was stopped"))
        self._acks.clear()
        self._subacks.clear()
        self._drain()
        log.info("mqtt.stopped", url=self._url.safe, client_id=self.client_id)

    async def _shutdown_client(self, *, session_end: bool) -> None:
        client = self._client
        assert client is not None
        props = None
        if session_end:
            props = _properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        client.disconnect(properties=props)
        await asyncio.to_thread(client.loop_stop)

    def _check_open(self) -> Client:
        if self._closed or not self._started or self._client is None:
            raise BusClosedError("the MQTT bus is not started")
        return self._client

    # -- publish -----------------------------------------------------------------

    async def publish(
        self, topic: str, value: bytes, *, headers: Headers = (), retain: bool = False
    ) -> None:
        """Publish at QoS 1 and wait for PUBACK.

        Raises PublishError on a failure reason code, a payload over the broker's
        maximum packet size, a non-UTF-8 header value or ``publish_timeout``.
        """
        client = self._check_open()
        check_topic(topic)
        props = None
        size = len(value) + len(topic) + _PACKET_OVERHEAD
        if headers:
            props = _properties(PacketTypes.PUBLISH)
            try:
                props.UserProperty = [(k, v.decode()) for k, v in headers]
            except UnicodeDecodeError as exc:
                raise PublishError(f"MQTT header values must be UTF-8 text: {exc}") from None
            size += sum(len(k) + len(v) + 5 for k, v in headers)
        if size > self._max_packet:
            raise PublishError(
                f"{size} bytes to {topic!r} exceed the broker's maximum packet size "
                f"{self._max_packet}; send smaller chunks"
            )
        with _mapped(f"publish to {topic!r}"):
            info = client.publish(topic, value, qos=1, retain=retain, properties=props)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise _error(f"publish to {topic!r}", info.rc)  # NO_CONN: queued for reconnect
        loop = self._loop
        assert loop is not None
        fut: asyncio.Future[None] = loop.create_future()
        self._acks[info.mid] = (fut, loop.time(), topic)
        try:
            await fut
        finally:
            if not fut.done() or fut.cancelled():
                self._acks.pop(info.mid, None)

    def _sweep(self) -> None:
        """Fail publishes whose PUBACK is overdue (one timer for all, not one each)."""
        loop, timeout = self._loop, self._publish_timeout
        if loop is None or timeout is None or self._closed:
            return
        now = loop.time()
        for mid, (fut, sent, topic) in list(self._acks.items()):
            if now - sent >= timeout:
                del self._acks[mid]
                if not fut.done():
                    fut.set_exception(PublishError(f"no PUBACK for {topic!r} within {timeout:g}s"))
        self._sweeper = loop.call_later(min(1.0, timeout / 4), self._sweep)

    # -- subscribe ---------------------------------------------------------------

    async def subscribe(
        self, topic_filters: Sequence[str], *, share_group: str | None = None
    ) -> Subscription:
        """Subscribe at QoS 1; returns once the broker granted every filter (SUBACK)."""
        client = self._check_open()
        if not topic_filters:
            raise TopicError("subscribe needs at least one topic filter")
        for flt in topic_filters:
            check_filter(flt)
        if share_group is not None and (not share_group or any(c in share_group for c in "/+#")):
            raise TopicError(f"bad share group name {share_group!r}")
        prefix = f"$share/{share_group}/" if share_group is not None else ""
        sub = _MqttSub(
            self,
            filters=tuple(topic_filters),
            broker_filters=tuple(prefix + f for f in topic_filters),
            shared=share_group is not None,
        )
        self._subs.append(sub)
        for bf in sub.broker_filters:
            self._filter_subs.setdefault(bf, []).append(sub)
        self._adopt_orphans(sub)
        overlapping = [s for s in self._subs if s is not sub and _overlap(s, sub)]
        try:
            for other in overlapping:
                if other.plain:  # give it an identifier too, keeping its subscription
                    await self._send_subscribe(client, other, retain_handling=2, with_id=True)
            await self._send_subscribe(client, sub, retain_handling=0, with_id=bool(overlapping))
        except BaseException:
            await sub.close()
            raise
        return sub

    async def _send_subscribe(
        self, client: Client, sub: _MqttSub, *, retain_handling: int, with_id: bool
    ) -> None:
        props = None
        if with_id:
            sub_id = heapq.heappop(self._free_ids) if self._free_ids else next(self._next_id)
            sub.ids.append(sub_id)
            self._id_sub[sub_id] = sub
            props = _properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = sub_id
        sub.plain = not sub.ids
        opts = SubscribeOptions(qos=1, retainAsPublished=False, retainHandling=retain_handling)
        with _mapped(f"subscribe to {list(sub.broker_filters)}"):
            rc, mid = client.subscribe([(bf, opts) for bf in sub.broker_filters], properties=props)
        _check_rc(f"subscribe to {list(sub.broker_filters)}", rc)
        assert self._loop is not None and mid is not None
        fut: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._subacks[mid] = fut
        reasons = await fut
        for bf, reason in zip(sub.broker_filters, reasons, strict=False):
            if reason.is_failure:
                raise _error(f"subscribe to {bf!r}", reason)

    def _unsubscribe(self, sub: _MqttSub) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
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
        if gone and not self._closed and self._client is not None:
            # Fire and forget: no caller needs UNSUBACK, and a later SUBSCRIBE
            # of the same filter is ordered after it on the same connection.
            self._client.unsubscribe(gone)

    # -- network thread -> loop --------------------------------------------------

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        """Called on paho's thread: queue ``fn(*args)`` for the loop thread."""
        self._inbox.append((fn, args))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False  # before popping: a racing append reschedules
        inbox = self._inbox
        while inbox:
            fn, args = inbox.popleft()
            fn(*args)

    def _on_connect(
        self,
        _c: Client,
        _u: Any,
        flags: ConnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        self._post(self._connected_cb, flags.session_present, reason, props)

    def _on_disconnect(
        self,
        _c: Client,
        _u: Any,
        _f: DisconnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        self._post(self._disconnected_cb, reason)

    def _on_publish(
        self, _c: Client, _u: Any, mid: int, reason: ReasonCode, _p: Properties | None
    ) -> None:
        self._post(self._acked, mid, reason)

    def _on_subscribe(
        self, _c: Client, _u: Any, mid: int, reasons: list[ReasonCode], _p: Properties | None
    ) -> None:
        self._post(self._subacked, mid, reasons)

    def _on_message(self, _c: Client, _u: Any, msg: MQTTMessage) -> None:
        props = msg.properties
        headers: Headers = ()
        ids: tuple[int, ...] = ()
        if props is not None:
            user = getattr(props, "UserProperty", None)
            if user:
                headers = tuple((k, v.encode()) for k, v in user)
            ids = tuple(getattr(props, "SubscriptionIdentifier", ()))
        payload = msg.payload
        record = Record(
            topic=msg.topic,
            value=payload if type(payload) is bytes else bytes(payload),
            headers=headers,
            retained=bool(msg.retain),
        )
        self._post(self._deliver, record, ids)

    # -- loop thread handlers ----------------------------------------------------

    def _connected_cb(
        self, session_present: bool, reason: ReasonCode, props: Properties | None
    ) -> None:
        first = self._first_connect
        if reason.is_failure:
            log.warning("mqtt.connect_refused", url=self._url.safe, reason=str(reason))
            if first is not None and not first.done():
                first.set_exception(_error(f"connect to {self._url.safe}", reason))
            return
        self._max_packet = getattr(props, "MaximumPacketSize", None) or _MAX_PACKET
        self._connected.set()
        resumed = first is not None and first.done()
        log.info(
            "mqtt.connected",
            url=self._url.safe,
            client_id=self.client_id,
            session_present=session_present,
            reconnect=resumed,
        )
        if first is not None and not first.done():
            first.set_result(None)
        if resumed and not session_present and self._subs and self._client is not None:
            # The broker lost our session (restart without persistence, or expiry).
            client = self._client
            for sub in list(self._subs):
                again = self._send_subscribe(client, sub, retain_handling=0, with_id=not sub.plain)
                task = asyncio.ensure_future(again)
                task.add_done_callback(_log_resubscribe)

    def _disconnected_cb(self, reason: ReasonCode) -> None:
        self._connected.clear()
        if not self._closed:
            log.warning("mqtt.disconnected", url=self._url.safe, reason=str(reason))

    def _acked(self, mid: int, reason: ReasonCode) -> None:
        entry = self._acks.pop(mid, None)
        if entry is None or entry[0].done():
            return
        fut = entry[0]
        if reason.is_failure:
            fut.set_exception(_error("publish", reason))
        else:  # 0x10 "no matching subscribers" is a success
            fut.set_result(None)

    def _subacked(self, mid: int, reasons: list[ReasonCode]) -> None:
        fut = self._subacks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(reasons)

    def _deliver(self, record: Record, ids: tuple[int, ...]) -> None:
        targets: list[_MqttSub] = []
        if not ids:  # from a subscription without identifier: it overlaps no other
            for plain in self._subs:
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
                members: Sequence[_MqttSub] = self._filter_subs.get(bf, ())
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
            targets = [s for s in self._subs if any(matches(f, record.topic) for f in s.filters)]
        if not targets:
            if len(self._orphans) == self._orphans.maxlen:
                log.warning("mqtt.orphan_dropped", topic=self._orphans[0][0].topic)
            self._orphans.append((record, ids))
            return
        for sub in targets:
            sub.put(record)

    def _adopt_orphans(self, sub: _MqttSub) -> None:
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


def _filters_overlap(a: str, b: str) -> bool:
    """Whether some topic matches both MQTT filters."""
    la, lb = a.split("/"), b.split("/")
    for x, y in zip(la, lb, strict=False):
        if x == "#" or y == "#":
            return True
        if x != y and "+" not in (x, y):
            return False
    return len(la) == len(lb) or "#" in (la[len(lb)] if len(la) > len(lb) else lb[len(la)])


def _overlap(a: _MqttSub, b: _MqttSub) -> bool:
    """Whether the broker could deliver one message for both subscriptions."""
    return any(_filters_overlap(x, y) for x in a.filters for y in b.filters)


def _no_delay(_c: Client, _u: Any, sock: Any) -> None:
    """Turn Nagle off: with QoS 1 pipelining it meets delayed ACKs and stalls ~40 ms."""
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _log_resubscribe(task: asyncio.Future[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("mqtt.resubscribe_failed", error=str(exc))
    else:
        log.info("mqtt.resubscribed")


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(eq=False)
class _MqttSub(Subscription):
    bus: MqttBus
    filters: tuple[str, ...]
    broker_filters: tuple[str, ...]
    shared: bool
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
            self._end()
            self.bus._unsubscribe(self)

    def _end(self) -> None:
        if not self.closed:
            self.closed = True
            if self.waiter is not None:
                _wake(self.waiter)
