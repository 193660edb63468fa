"""The bus ports: what every role needs from MQTT and Kafka, and nothing more.

Two ports, because the two planes have different semantics:

- :class:`PubSubBus` is the device plane (MQTT v5): topic filters with ``+`` and
  ``#``, retained messages, shared subscriptions, at-least-once (QoS 1) delivery.
- :class:`LogBus` is the service plane (Kafka): keyed records in partitioned
  logs with offsets, consumer groups, committed offsets and seeking, so a round
  can be replayed.

Adapters: :mod:`flbus.memory` (both, in process), :mod:`flbus.mqtt`
(:class:`PubSubBus`), :mod:`flbus.kafka` (:class:`LogBus`). One contract test
suite runs against every implementation.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

Headers = tuple[tuple[str, bytes], ...]
Start = Literal["earliest", "latest"]


@dataclass(frozen=True, slots=True)
class TopicPartition:
    """One partition of one log topic."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Record:
    """One message as a subscriber receives it.

    ``partition`` / ``offset`` / ``timestamp_ms`` are meaningful on a log bus;
    on a pub/sub bus offset is -1 and ``retained`` says whether the broker
    replayed a retained message on subscribe.
    """

    topic: str
    value: bytes
    key: bytes | None = None
    headers: Headers = ()
    partition: int = 0
    offset: int = -1
    timestamp_ms: int = 0
    retained: bool = False

    @property
    def tp(self) -> TopicPartition:
        """The topic-partition this record came from."""
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name``, or None."""
        for k, v in reversed(self.headers):
            if k == name:
                return v
        return None


@dataclass(frozen=True, slots=True)
class Published:
    """Where a log bus stored a record."""

    topic: str
    partition: int
    offset: int


class Subscription(abc.ABC):
    """A stream of records; also an async iterator that ends when closed."""

    @abc.abstractmethod
    async def get(self, timeout: float | None = None) -> Record | None:
        """Wait for the next record.

        Parameters
        ----------
        timeout:
            Seconds to wait; None waits until a record arrives or the
            subscription is closed.

        Returns
        -------
        The next record, or None when the timeout passed first.

        Raises
        ------
        BusClosedError
            The subscription (or its bus) is closed.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop receiving; pending records are dropped (a log bus redelivers
        uncommitted ones to the group)."""

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Record:
        from flbus.errors import BusClosedError

        try:
            record = await self.get(None)
        except BusClosedError:
            raise StopAsyncIteration from None
        if record is None:  # pragma: no cover - get(None) only returns on a record
            raise StopAsyncIteration
        return record

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class LogSubscription(Subscription):
    """A subscription to log topics, with offsets under the caller's control."""

    @abc.abstractmethod
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this subscriber currently reads."""

    @abc.abstractmethod
    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit offsets for the group.

        Parameters
        ----------
        offsets:
            The next offset to read per partition. None commits, for every
            partition, the offset after the last record ``get`` returned.
        """

    @abc.abstractmethod
    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset of ``tp``, or None if there is none."""

    @abc.abstractmethod
    async def seek(self, tp: TopicPartition, offset: int) -> None:
        """Make the next ``get`` on ``tp`` return the record at ``offset``."""

    @abc.abstractmethod
    async def seek_to_time(self, timestamp_ms: int) -> None:
        """Move every assigned partition to its first record at or after
        ``timestamp_ms`` (to the end where there is none)."""

    @abc.abstractmethod
    async def end_offsets(self) -> dict[TopicPartition, int]:
        """The offset the next record appended to each assigned partition gets."""


class _Lifecycle(abc.ABC):
    @abc.abstractmethod
    async def start(self) -> None:
        """Connect; raises BrokerUnavailableError if the broker cannot be reached."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Close every subscription and disconnect; idempotent."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class PubSubBus(_Lifecycle):
    """The device plane: MQTT v5 semantics."""

    @abc.abstractmethod
    async def publish(
        self, topic: str, value: bytes, *, headers: Headers = (), retain: bool = False
    ) -> None:
        """Publish at least once (QoS 1); returns once the broker acknowledged.

        Parameters
        ----------
        topic:
            A concrete topic (no wildcards).
        value:
            The payload; with ``retain`` an empty payload clears the retained one.
        headers:
            Carried as MQTT v5 user properties.
        retain:
            Keep this as the topic's retained message for future subscribers.
        """

    @abc.abstractmethod
    async def subscribe(
        self, topic_filters: Sequence[str], *, share_group: str | None = None
    ) -> Subscription:
        """Subscribe to topic filters (``+`` one level, ``#`` the rest).

        Parameters
        ----------
        topic_filters:
            MQTT topic filters.
        share_group:
            With a name, a shared subscription: each message goes to one
            member of the group (MQTT v5 ``$share/<group>/<filter>``).

        Returns
        -------
        A subscription that first yields matching retained messages, then
        every message published after the call returned.
        """

    @property
    def connected(self) -> bool:
        """Whether the link to the broker is up now (a bus without a link is always up)."""
        return True

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the event loop each time the link comes back after a loss.

        A restarted broker may have lost retained messages and sessions; publishers of
        retained state republish it from here. A bus without a link never calls it.
        """


class LogBus(_Lifecycle):
    """The service plane: Kafka semantics."""

    @abc.abstractmethod
    async def create_topic(
        self, name: str, *, partitions: int = 1, compacted: bool = False
    ) -> None:
        """Create a topic if it does not exist yet (idempotent)."""

    @abc.abstractmethod
    async def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        partition: int | None = None,
    ) -> Published:
        """Append one record; returns once it is durably stored.

        Parameters
        ----------
        topic:
            The topic; created with one partition if it does not exist.
        value, key, headers:
            The record. Records with the same key go to the same partition.
        partition:
            Force a partition instead of the key's.

        Returns
        -------
        Where the record was stored.
        """

    @abc.abstractmethod
    async def subscribe(
        self, topics: Sequence[str], *, group: str | None = None, start: Start = "earliest"
    ) -> LogSubscription:
        """Read topics.

        Parameters
        ----------
        topics:
            Topic names (no patterns).
        group:
            A consumer group: partitions are shared among its members and
            offsets can be committed. None reads every partition alone and
            cannot commit.
        start:
            Where to begin where the group has no committed offset.
        """
