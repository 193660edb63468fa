"""The device plane on a real MQTT v5 broker: :class:`MqttBus` on paho-mqtt 2.x.

This module is the asyncio side of the bus: start and stop, publishes waiting
for their PUBACK, subscribes waiting for their SUBACK. Its helpers each do one
job: :mod:`flbus.mqtt_url` reads the broker URL (TLS, credentials),
:mod:`flbus.mqtt_routing` decides which local subscription gets a delivered
message (subscription identifiers, shared groups, retained replays, messages of
a resumed session), :mod:`flbus.mqtt_paho` is the paho client and the one
place where paho's errors become flbus errors, and :mod:`flbus.mqtt_aio`
runs that client's I/O on the asyncio loop (no network thread).
Every future, queue and routing table is touched on the loop thread only.

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
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from flbus.errors import BrokerUnavailableError, BusClosedError, BusError, PublishError, TopicError
from flbus.mqtt_match import check_filter, check_topic
from flbus.mqtt_paho import LinkEvents, PahoLink, user_properties
from flbus.mqtt_routing import MqttSubscription, Router
from flbus.mqtt_url import MqttUrl
from flbus.port import Headers, PubSubBus, Subscription

log = structlog.get_logger(__name__)

_MAX_PACKET = 268_435_455  # MQTT's largest remaining length
_PACKET_OVERHEAD = 64  # fixed header, lengths, packet id, property framing


@dataclass(frozen=True, slots=True)
class _Unacked:
    """A publish waiting for its PUBACK."""

    fut: asyncio.Future[None]
    sent: float  # loop time
    topic: str


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
        network_thread: bool = False,
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
        network_thread:
            Run paho's own network thread instead of driving the client from
            the asyncio loop (the default: no thread, no hand-over per message).
        """
        self._url = MqttUrl.parse(url)
        self._ephemeral = client_id is None
        self.client_id = client_id or f"flbus-{secrets.token_hex(8)}"
        self._session_expiry = session_expiry
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self._publish_timeout = publish_timeout
        self._reconnect_delay = reconnect_delay
        self._max_inflight = max_inflight
        self._network_thread = network_thread
        self._max_packet = _MAX_PACKET  # until CONNACK says otherwise
        self._router = Router(max_orphans)

        self._loop: asyncio.AbstractEventLoop | None = None
        self._link: PahoLink | None = None
        self._started = False
        self._closed = False
        self._connected = asyncio.Event()
        self._first_connect: asyncio.Future[None] | None = None
        self._acks: dict[int, _Unacked] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._subacks: dict[int, asyncio.Future[list[BusError | None]]] = {}
        self._reconnect_listeners: list[Callable[[], None]] = []

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Connect; raises BrokerUnavailableError naming the URL after ``connect_timeout``."""
        if self._closed:
            raise BusClosedError("this MqttBus was stopped; make a new one")
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._first_connect = self._loop.create_future()
        events = LinkEvents(
            connected=self._on_connected,
            refused=self._on_refused,
            disconnected=self._on_disconnected,
            acked=self._on_acked,
            subacked=self._on_subacked,
            message=self._router.deliver,
        )
        link = PahoLink(
            self._url,
            self.client_id,
            events,
            self._loop,
            session_expiry=self._session_expiry,
            keepalive=self._keepalive,
            reconnect_delay=self._reconnect_delay,
            max_inflight=self._max_inflight,
            network_thread=self._network_thread,
        )
        link.connect()
        self._link = link
        try:
            await asyncio.wait_for(asyncio.shield(self._first_connect), self._connect_timeout)
        except (TimeoutError, BusError) as exc:
            await link.close(session_end=True)
            self._link = None
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
        self._router.end_all()
        if self._link is not None:
            await self._link.close(session_end=self._ephemeral)
        if self._sweeper is not None:
            self._sweeper.cancel()
        pending = [entry.fut for entry in self._acks.values()] + list(self._subacks.values())
        for fut in pending:
            if not fut.done():
                fut.set_exception(BusClosedError("the MQTT bus was stopped"))
        self._acks.clear()
        self._subacks.clear()
        if self._link is not None:
            self._link.drain()
        log.info("mqtt.stopped", url=self._url.safe, client_id=self.client_id)

    @property
    def connected(self) -> bool:
        """Whether the link to the broker is up now."""
        return self._started and not self._closed and self._connected.is_set()

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the loop after every reconnect (after resubscribing is sent)."""
        self._reconnect_listeners.append(callback)

    def _check_open(self) -> PahoLink:
        if self._closed or not self._started or self._link is None:
            raise BusClosedError("the MQTT bus is not started")
        return self._link

    # -- publish -----------------------------------------------------------------

    async def publish(
        self, topic: str, value: bytes, *, headers: Headers = (), retain: bool = False
    ) -> None:
        """Publish at QoS 1 and wait for PUBACK.

        Raises PublishError on a failure reason code, a payload over the broker's
        maximum packet size, a non-UTF-8 header value or ``publish_timeout``.
        """
        link = self._check_open()
        check_topic(topic)
        props = None
        size = len(value) + len(topic) + _PACKET_OVERHEAD
        if headers:
            props = user_properties(headers)
            size += sum(len(k) + len(v) + 5 for k, v in headers)
        if size > self._max_packet:
            raise PublishError(
                f"{size} bytes to {topic!r} exceed the broker's maximum packet size "
                f"{self._max_packet}; send smaller chunks"
            )
        mid = link.publish(topic, value, retain, props)
        loop = self._loop
        assert loop is not None
        fut: asyncio.Future[None] = loop.create_future()
        self._acks[mid] = _Unacked(fut, loop.time(), topic)
        try:
            await fut
        finally:
            if not fut.done() or fut.cancelled():
                self._acks.pop(mid, None)

    def _sweep(self) -> None:
        """Fail publishes whose PUBACK is overdue (one timer for all, not one each)."""
        loop, timeout = self._loop, self._publish_timeout
        if loop is None or timeout is None or self._closed:
            return
        now = loop.time()
        for mid, entry in list(self._acks.items()):
            if now - entry.sent >= timeout:
                del self._acks[mid]
                if not entry.fut.done():
                    entry.fut.set_exception(
                        PublishError(f"no PUBACK for {entry.topic!r} within {timeout:g}s")
                    )
        self._sweeper = loop.call_later(min(1.0, timeout / 4), self._sweep)

    # -- subscribe ---------------------------------------------------------------

    async def subscribe(
        self, topic_filters: Sequence[str], *, share_group: str | None = None
    ) -> Subscription:
        """Subscribe at QoS 1; returns once the broker granted every filter (SUBACK)."""
        link = self._check_open()
        if not topic_filters:
            raise TopicError("subscribe needs at least one topic filter")
        for flt in topic_filters:
            check_filter(flt)
        if share_group is not None and (not share_group or any(c in share_group for c in "/+#")):
            raise TopicError(f"bad share group name {share_group!r}")
        prefix = f"$share/{share_group}/" if share_group is not None else ""
        sub = MqttSubscription(
            filters=tuple(topic_filters),
            broker_filters=tuple(prefix + f for f in topic_filters),
            shared=share_group is not None,
            on_close=self._unsubscribe,
        )
        overlapping = self._router.add(sub)
        try:
            for other in overlapping:
                if other.plain:  # give it an identifier too, keeping its subscription
                    await self._send_subscribe(link, other, retain_handling=2, with_id=True)
            await self._send_subscribe(link, sub, retain_handling=0, with_id=bool(overlapping))
        except BaseException:
            await sub.close()
            raise
        return sub

    async def _send_subscribe(
        self, link: PahoLink, sub: MqttSubscription, *, retain_handling: int, with_id: bool
    ) -> None:
        sub_id = self._router.identify(sub, with_id)
        mid = link.subscribe(sub.broker_filters, retain_handling=retain_handling, sub_id=sub_id)
        assert self._loop is not None
        fut: asyncio.Future[list[BusError | None]] = self._loop.create_future()
        self._subacks[mid] = fut
        for failure in await fut:
            if failure is not None:
                raise failure

    def _unsubscribe(self, sub: MqttSubscription) -> None:
        gone = self._router.remove(sub)
        if gone and not self._closed and self._link is not None:
            # Fire and forget: no caller needs UNSUBACK, and a later SUBSCRIBE
            # of the same filter is ordered after it on the same connection.
            self._link.unsubscribe(gone)

    # -- what the link reports (loop thread) -------------------------------------

    def _on_connected(self, session_present: bool, max_packet: int | None) -> None:
        first = self._first_connect
        self._max_packet = max_packet or _MAX_PACKET
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
        if resumed and not session_present and self._router.subs and self._link is not None:
            # The broker lost our session (restart without persistence, or expiry).
            link = self._link
            for sub in list(self._router.subs):
                again = self._send_subscribe(link, sub, retain_handling=0, with_id=not sub.plain)
                task = asyncio.ensure_future(again)
                task.add_done_callback(_log_resubscribe)
        if resumed:
            for callback in list(self._reconnect_listeners):
                try:
                    callback()
                except Exception:  # a listener's bug must not break the link's events
                    log.exception("mqtt.reconnect_listener_failed")

    def _on_refused(self, reason: str, error: BusError) -> None:
        log.warning("mqtt.connect_refused", url=self._url.safe, reason=reason)
        first = self._first_connect
        if first is not None and not first.done():
            first.set_exception(error)

    def _on_disconnected(self, reason: str) -> None:
        self._connected.clear()
        if not self._closed:
            log.warning("mqtt.disconnected", url=self._url.safe, reason=reason)

    def _on_acked(self, mid: int, failure: BusError | None) -> None:
        entry = self._acks.pop(mid, None)
        if entry is None or entry.fut.done():
            return
        if failure is not None:
            entry.fut.set_exception(failure)
        else:
            entry.fut.set_result(None)

    def _on_subacked(self, mid: int, failures: list[BusError | None]) -> None:
        fut = self._subacks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(failures)


def _log_resubscribe(task: asyncio.Future[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("mqtt.resubscribe_failed", error=str(exc))
    else:
        log.info("mqtt.resubscribed")
