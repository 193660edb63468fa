"""The paho-mqtt side of :class:`~flbus.mqtt.MqttBus`: one client, its I/O, its errors.

I/O: by default the asyncio loop drives the client (:mod:`flbus.mqtt_aio`):
socket I/O, keepalive and reconnects with backoff run on the loop's thread and
paho's callbacks call :class:`LinkEvents` directly. With ``network_thread``
paho's own thread (``loop_start``) does the I/O instead; its callbacks only
append to one inbox, and the first append after a drain schedules one
``call_soon_threadsafe``, so a burst of acks and messages costs one wake-up of
the asyncio loop, not one each. Either way :class:`LinkEvents` are called on
the loop thread, already in flbus terms: reason codes become
:class:`~flbus.errors.BusError` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from flbus.errors import BrokerUnavailableError, BusError, PublishError, TopicError
from flbus.mqtt_aio import LoopDriver
from flbus.mqtt_url import MqttUrl
from flbus.port import Headers, Record

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


# -----------------------------------------------------------------------------


def user_properties(headers: Headers) -> Properties:
    """Headers as MQTT v5 user properties; PublishError when a value is not UTF-8."""
    props = _properties(PacketTypes.PUBLISH)
    try:
        props.UserProperty = [(k, v.decode()) for k, v in headers]
    except UnicodeDecodeError as exc:
        raise PublishError(f"MQTT header values must be UTF-8 text: {exc}") from None
    return props


@dataclass(frozen=True, slots=True)
class LinkEvents:
    """What a :class:`PahoLink` reports; each is called on the event loop's thread."""

    connected: Callable[[bool, int | None], None]  # session present, broker's max packet
    refused: Callable[[str, BusError], None]  # the broker's reason, as text and as error
    disconnected: Callable[[str], None]  # the reason
    acked: Callable[[int, BusError | None], None]  # message id, failure
    subacked: Callable[[int, list[BusError | None]], None]  # message id, failure per filter
    message: Callable[[Record, tuple[int, ...]], None]  # record, subscription identifiers


class PahoLink:
    """One paho client, driven by the event loop (or its own thread), reporting to the loop."""

    def __init__(
        self,
        url: MqttUrl,
        client_id: str,
        events: LinkEvents,
        loop: asyncio.AbstractEventLoop,
        *,
        session_expiry: int,
        keepalive: int,
        reconnect_delay: tuple[float, float],
        max_inflight: int,
        network_thread: bool = False,
    ) -> None:
        """Configure the client; nothing connects before :meth:`connect`."""
        self._url, self._events, self._loop = url, events, loop
        self._session_expiry, self._keepalive = session_expiry, keepalive
        self._inbox: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._drain_scheduled = False
        self._loop_thread = threading.get_ident()
        self._subscribing: dict[int, Sequence[str]] = {}  # SUBSCRIBE mid -> its filters
        client = Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=True,
        )
        if url.username is not None:
            client.username_pw_set(url.username, url.password)
        client.max_inflight_messages_set(max_inflight)
        client.reconnect_delay_set(*reconnect_delay)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        self._driver: LoopDriver | None = None
        if network_thread:
            client.on_socket_open = _no_delay
        else:
            self._driver = LoopDriver(
                client, loop, reconnect_delay, lambda s: _no_delay(client, None, s)
            )

    def connect(self) -> None:
        """Start connecting (and reconnecting) on paho's thread; the outcome is an event."""
        client, url = self._client, self._url
        if url.tls:
            # Verifies the broker's certificate and host name (system CAs, or ?ca=).
            with _mapped(f"TLS set-up for {url.safe}"):
                client.tls_set(ca_certs=url.ca_file)
        props = _properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._session_expiry
        with _mapped(f"connect to {url.safe}"):
            client.connect_async(
                url.host, url.port, keepalive=self._keepalive, clean_start=False, properties=props
            )
        if self._driver is not None:
            self._driver.start()
        else:
            client.loop_start()

    async def close(self, *, session_end: bool) -> None:
        """Disconnect (``session_end``: ask the broker to drop the session) and join the thread."""
        props = None
        if session_end:
            props = _properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        self._client.disconnect(properties=props)
        if self._driver is not None:
            await self._driver.close()
        else:
            await asyncio.to_thread(self._client.loop_stop)

    def publish(self, topic: str, value: bytes, retain: bool, props: Properties | None) -> int:
        """Queue a QoS 1 publish; return its message id (PUBACK comes as ``acked``)."""
        with _mapped(f"publish to {topic!r}"):
            info = self._client.publish(topic, value, qos=1, retain=retain, properties=props)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise _error(f"publish to {topic!r}", info.rc)  # NO_CONN: queued for reconnect
        return info.mid

    def subscribe(
        self, broker_filters: Sequence[str], *, retain_handling: int, sub_id: int | None
    ) -> int:
        """Send one SUBSCRIBE at QoS 1; return its message id (SUBACK comes as ``subacked``)."""
        props = None
        if sub_id is not None:
            props = _properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = sub_id
        opts = SubscribeOptions(qos=1, retainAsPublished=False, retainHandling=retain_handling)
        what = f"subscribe to {list(broker_filters)}"
        with _mapped(what):
            rc, mid = self._client.subscribe(
                [(bf, opts) for bf in broker_filters], properties=props
            )
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise _error(what, rc)
        assert mid is not None
        self._subscribing[mid] = broker_filters
        return mid

    def unsubscribe(self, broker_filters: list[str]) -> None:
        """Send UNSUBSCRIBE without waiting for UNSUBACK."""
        self._client.unsubscribe(broker_filters)

    # -- network thread -> loop --------------------------------------------------

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        """Called where paho calls back: ``fn(*args)`` now on the loop, else queued for it."""
        if self._driver is not None and threading.get_ident() == self._loop_thread:
            fn(*args)
            return
        self._inbox.append((fn, args))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            loop = self._loop
            if not loop.is_closed():
                loop.call_soon_threadsafe(self.drain)

    def drain(self) -> None:
        """Loop thread: run what paho's thread queued."""
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
        self._post(self._connected, flags.session_present, reason, props)

    def _on_disconnect(
        self,
        _c: Client,
        _u: Any,
        _f: DisconnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        self._post(self._events.disconnected, str(reason))

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
        self._post(self._events.message, record, ids)

    # -- loop thread: reason codes become flbus terms ---------------------------

    def _connected(self, session_present: bool, reason: ReasonCode, props: Any) -> None:
        if reason.is_failure:
            self._events.refused(str(reason), _error(f"connect to {self._url.safe}", reason))
        else:
            if self._driver is not None:
                self._driver.connected()
            self._events.connected(session_present, getattr(props, "MaximumPacketSize", None))

    def _acked(self, mid: int, reason: ReasonCode) -> None:
        # 0x10 "no matching subscribers" is a success
        self._events.acked(mid, _error("publish", reason) if reason.is_failure else None)

    def _subacked(self, mid: int, reasons: list[ReasonCode]) -> None:
        filters = self._subscribing.pop(mid, ())
        failures = [
            _error(f"subscribe to {bf!r}", reason) if reason.is_failure else None
            for bf, reason in zip(filters, reasons, strict=False)
        ]
        self._events.subacked(mid, failures)


def _no_delay(_c: Client, _u: Any, sock: Any) -> None:
    """Turn Nagle off: with QoS 1 pipelining it meets delayed ACKs and stalls ~40 ms."""
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
