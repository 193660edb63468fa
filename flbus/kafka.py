"""The service plane on a real Apache Kafka: :class:`KafkaBus` on aiokafka.

- Producer: idempotent, ``acks=all``; ``publish`` returns once the record is
  durably stored and says where. Concurrent publishes to one partition are
  batched by aiokafka while a request is in flight.
- Consumers: one aiokafka consumer per subscription, auto-commit off. Without
  a group the subscription is manually assigned every partition of its topics
  and its start position is resolved before ``subscribe`` returns; with a group
  the broker's coordinator assigns partitions (poll ``assignment()``).
  ``get`` hands out records one by one from the batch of the last fetch and
  remembers the last offset returned per partition for ``commit(None)``.
- Topics are created through the admin client (``TopicAlreadyExists`` is
  fine, an existing topic's settings are left alone); ``publish`` and
  ``subscribe`` create missing topics with one partition, so the broker's
  ``auto.create.topics.enable`` does not matter.

Sizes: one record (value + key + headers + ~100 bytes of batch framing) must
fit under the producer's ``max_request_size`` (``max_message_bytes`` here,
default 1 MiB), the broker's ``message.max.bytes`` (default 1,048,588) and the
topic's ``max.message.bytes``; a 512 KiB chunk fits all three with room. The
consumer's ``max_partition_fetch_bytes`` follows ``max_message_bytes`` (brokers
also return a single bigger batch, so it is not a hard limit). Too large a
record raises PublishError.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaTP
from aiokafka import errors as kerr
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord

from flbus.errors import (
    BrokerUnavailableError,
    BusClosedError,
    BusError,
    PublishError,
    TopicError,
)
from flbus.port import (
    Headers,
    LogBus,
    LogSubscription,
    Published,
    Record,
    Start,
    TopicPartition,
)

log = structlog.get_logger(__name__)

_LEGAL_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


# -- the one place where aiokafka's errors become flbus errors ---------------


def _error(what: str, exc: BaseException) -> BusError:
    """Translate an aiokafka (or asyncio) exception into a BusError."""
    text = f"{what}: {exc.__class__.__name__}: {exc}"
    if isinstance(exc, BusError):
        return exc
    if isinstance(exc, kerr.ConsumerStoppedError):
        return BusClosedError(text)
    if isinstance(
        exc,
        kerr.MessageSizeTooLargeError
        | kerr.RecordTooLargeError
        | kerr.RecordListTooLargeError
        | kerr.NotEnoughReplicasError
        | kerr.NotEnoughReplicasAfterAppendError,
    ):
        return PublishError(text)
    if isinstance(
        exc,
        kerr.InvalidTopicError
        | kerr.TopicAuthorizationFailedError
        | kerr.UnknownTopicOrPartitionError
        | kerr.InvalidPartitionsError
        | kerr.InvalidReplicationFactorError
        | kerr.PolicyViolationError,
    ):
        return TopicError(text)
    if isinstance(
        exc,
        kerr.KafkaConnectionError
        | kerr.NodeNotReadyError
        | kerr.KafkaUnavailableError
        | kerr.BrokerNotAvailableError
        | TimeoutError
        | OSError,
    ):
        return BrokerUnavailableError(text)
    if isinstance(exc, AssertionError) and "partition" in str(exc):
        return TopicError(text)  # aiokafka asserts on a partition the topic lacks
    if isinstance(exc, kerr.KafkaTimeoutError | kerr.RequestTimedOutError):
        return PublishError(text) if what.startswith("publish") else BrokerUnavailableError(text)
    return BusError(text)


@contextmanager
def _mapped(what: str) -> Iterator[None]:
    """Raise aiokafka's exceptions as BusErrors."""
    try:
        yield
    except BusError:
        raise
    except (kerr.KafkaError, OSError, TimeoutError, AssertionError) as exc:
        raise _error(what, exc) from exc


# -----------------------------------------------------------------------------


class KafkaBus(LogBus):
    """LogBus on Apache Kafka: idempotent producer, manual commits, admin-created topics."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "flbus",
        connect_timeout: float = 15.0,
        max_message_bytes: int = 1_048_576,
        linger_ms: int = 0,
        compression: str | None = None,
        replication_factor: int = 1,
        heartbeat_ms: int = 1000,
        session_timeout_ms: int = 10_000,
    ) -> None:
        """Configure the bus; nothing connects before ``start()``.

        Parameters
        ----------
        bootstrap:
            ``host:port[,host:port...]`` of the Kafka brokers.
        client_id:
            Prefix of the Kafka client ids (shows in broker logs and quotas).
        connect_timeout:
            Seconds ``start()`` may take before BrokerUnavailableError.
        max_message_bytes:
            Largest record the producer sends and the consumer fetches per
            partition; keep it at or below the broker's ``message.max.bytes``.
        linger_ms:
            How long the producer waits to fill a batch (0: send at once).
        compression:
            None, "gzip", "snappy", "lz4" or "zstd" (model updates barely compress).
        replication_factor:
            Replicas of topics this bus creates (1 on a single-node broker).
        heartbeat_ms, session_timeout_ms:
            Group membership timing: how fast a rebalance notices a member.
        """
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._connect_timeout = connect_timeout
        self._max_message_bytes = max_message_bytes
        self._linger_ms = linger_ms
        self._compression = compression
        self._replication = replication_factor
        self._heartbeat_ms = heartbeat_ms
        self._session_timeout_ms = session_timeout_ms
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._known_topics: set[str] = set()
        self._subs: set[_KafkaSub] = set()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Connect producer and admin client; BrokerUnavailableError names the bootstrap."""
        if self._closed:
            raise BusClosedError("this KafkaBus was stopped; make a new one")
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=f"{self._client_id}-producer",
            enable_idempotence=True,
            acks="all",
            linger_ms=self._linger_ms,
            max_request_size=self._max_message_bytes,
            # aiokafka's 16 KiB default splits a burst of 4 KiB records into many
            # requests, and an idempotent producer has one in flight per partition.
            max_batch_size=self._max_message_bytes,
            compression_type=self._compression,
        )
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap, client_id=f"{self._client_id}-admin"
        )
        try:
            async with asyncio.timeout(self._connect_timeout):
                await producer.start()
                await admin.start()
        except (kerr.KafkaError, OSError, TimeoutError) as exc:
            await _quietly(producer.stop())
            await _quietly(admin.close())
            raise BrokerUnavailableError(
                f"no Kafka broker answered at {self._bootstrap} within "
                f"{self._connect_timeout:g}s: {exc.__class__.__name__}: {exc}"
            ) from None
        self._producer, self._admin = producer, admin
        log.info("kafka.started", bootstrap=self._bootstrap)

    async def stop(self) -> None:
        """Close every subscription, flush and close the producer; idempotent."""
        if self._closed:
            return
        self._closed = True
        for sub in list(self._subs):
            await sub.close()
        if self._producer is not None:
            await _quietly(self._producer.stop())
        if self._admin is not None:
            await _quietly(self._admin.close())
        log.info("kafka.stopped", bootstrap=self._bootstrap)

    def _open(self) -> tuple[AIOKafkaProducer, AIOKafkaAdminClient]:
        if self._closed or self._producer is None or self._admin is None:
            raise BusClosedError("the Kafka bus is not started")
        return self._producer, self._admin

    # -- topics ------------------------------------------------------------------

    async def create_topic(
        self, name: str, *, partitions: int = 1, compacted: bool = False
    ) -> None:
        """Create ``name`` with ``partitions`` (and ``cleanup.policy=compact``) if missing.

        An existing topic is left as it is, whatever its partitions and policy.
        """
        _, admin = self._open()
        if not _LEGAL_TOPIC.match(name) or partitions < 1:
            raise TopicError(
                f"bad topic {name!r} (Kafka allows [A-Za-z0-9._-]{{1,249}}) "
                f"or partition count {partitions}"
            )
        configs = {"cleanup.policy": "compact"} if compacted else {}
        topic = NewTopic(name, partitions, self._replication, topic_configs=configs)
        with _mapped(f"create topic {name!r}"):
            response = await admin.create_topics([topic])
        for entry in response.topic_errors:
            code = entry[1]
            if code not in (0, kerr.TopicAlreadyExistsError.errno):
                exc = kerr.for_code(code)(entry[2] if len(entry) > 2 else "")
                raise _error(f"create topic {name!r}", exc)
        self._known_topics.add(name)

    async def _ensure_topic(self, name: str) -> None:
        if name not in self._known_topics:
            await self.create_topic(name)

    # -- publish -----------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        partition: int | None = None,
    ) -> Published:
        """Append one record with ``acks=all``; returns once the in-sync replicas have it.

        Raises PublishError when the record is too large or the broker does not
        acknowledge within the producer's request timeout, TopicError for a
        partition the topic does not have.
        """
        producer, _ = self._open()
        if topic not in self._known_topics:
            await self._ensure_topic(topic)
        try:  # inline, not _mapped(): this is the hot path
            meta = await producer.send_and_wait(
                topic,
                value,
                key=key,
                partition=partition,
                headers=list(headers) if headers else None,
            )
        except (kerr.KafkaError, OSError, TimeoutError, AssertionError) as exc:
            raise _error(f"publish to {topic!r}", exc) from exc
        return Published(meta.topic, meta.partition, meta.offset)

    # -- subscribe ---------------------------------------------------------------

    async def subscribe(
        self, topics: Sequence[str], *, group: str | None = None, start: Start = "earliest"
    ) -> LogSubscription:
        """Read ``topics`` alone (every partition, assigned at once) or in ``group``.

        Without a group the start position is fixed before this returns, so a
        record published afterwards is never skipped by ``start="latest"``.
        """
        producer, _ = self._open()
        if not topics:
            raise TopicError("subscribe needs at least one topic")
        for topic in topics:
            await self._ensure_topic(topic)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=f"{self._client_id}-consumer",
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset=start,
            max_partition_fetch_bytes=self._max_message_bytes,
            heartbeat_interval_ms=self._heartbeat_ms,
            session_timeout_ms=self._session_timeout_ms,
            metadata_max_age_ms=10_000,  # notice new partitions within seconds, not minutes
        )
        sub = _KafkaSub(self, consumer, group)
        try:
            async with asyncio.timeout(self._connect_timeout):
                with _mapped(f"subscribe to {list(topics)}"):
                    await consumer.start()
                    if group is None:
                        tps = await _all_partitions(producer, topics)
                        consumer.assign(tps)
                        for tp in tps:
                            await consumer.position(tp)  # resolve earliest/latest now
                    else:
                        # A topic created a moment ago may not be in every broker's
                        # metadata yet; a group joined then gets no partitions of it and
                        # would not look again for metadata_max_age_ms. Wait for it.
                        await _all_partitions(producer, topics)
                        consumer.subscribe(list(topics), listener=sub)
        except TimeoutError:
            await _quietly(consumer.stop())
            raise BrokerUnavailableError(
                f"subscribing to {list(topics)} at {self._bootstrap} took over "
                f"{self._connect_timeout:g}s"
            ) from None
        except BaseException:
            await _quietly(consumer.stop())
            raise
        self._subs.add(sub)
        return sub


async def _all_partitions(producer: AIOKafkaProducer, topics: Sequence[str]) -> list[KafkaTP]:
    """Every partition of ``topics`` (the producer waits for a new topic's metadata)."""
    out: list[KafkaTP] = []
    for topic in topics:
        partitions = await producer.partitions_for(topic)
        out.extend(KafkaTP(topic, p) for p in sorted(partitions))
    return out


async def _quietly(aw: Any) -> None:
    try:
        await aw
    except Exception as exc:  # teardown goes on; the cause is logged
        log.warning("kafka.teardown_error", error=repr(exc))


def _to_record(r: ConsumerRecord[bytes, bytes]) -> Record:
    return Record(
        topic=r.topic,
        value=r.value if r.value is not None else b"",
        key=r.key,
        headers=tuple(r.headers) if r.headers else (),
        partition=r.partition,
        offset=r.offset,
        timestamp_ms=r.timestamp,
    )


class _KafkaSub(LogSubscription, ConsumerRebalanceListener):  # type: ignore[misc]
    """One aiokafka consumer behind the LogSubscription port."""

    def __init__(self, bus: KafkaBus, consumer: AIOKafkaConsumer, group: str | None) -> None:
        self._bus = bus
        self._consumer = consumer
        self._group = group
        self._buf: deque[ConsumerRecord[bytes, bytes]] = deque()
        self._delivered: dict[tuple[str, int], int] = {}  # (topic, partition) -> offset
        self._closed = False

    # ConsumerRebalanceListener: drop what belongs to partitions we lost, so a
    # record is never handed out (or committed) by two members of the group.
    def on_partitions_revoked(self, revoked: Any) -> None:
        lost = {TopicPartition(tp.topic, tp.partition) for tp in revoked}
        self._buf = deque(r for r in self._buf if TopicPartition(r.topic, r.partition) not in lost)
        for tp in lost:
            self._delivered.pop((tp.topic, tp.partition), None)

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.debug("kafka.assigned", group=self._group, partitions=len(assigned))

    def _check(self) -> AIOKafkaConsumer:
        if self._closed:
            raise BusClosedError("subscription closed")
        return self._consumer

    async def get(self, timeout: float | None = None) -> Record | None:
        """The next record (from the last fetched batch when there is one)."""
        consumer = self._check()
        if not self._buf:
            loop = asyncio.get_running_loop()
            deadline = None if timeout is None else loop.time() + timeout
            while not self._buf:
                remaining = 1.0 if deadline is None else min(1.0, deadline - loop.time())
                with _mapped("fetch"):
                    batch = await consumer.getmany(timeout_ms=max(0, int(remaining * 1000)))
                self._check()
                for records in batch.values():
                    self._buf.extend(records)
                if not self._buf and deadline is not None and loop.time() >= deadline:
                    return None
        r = self._buf.popleft()
        self._delivered[(r.topic, r.partition)] = r.offset
        return _to_record(r)

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this consumer holds now."""
        if self._closed:
            return frozenset()
        return frozenset(
            TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()
        )

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit ``offsets`` (next offset to read), or after the last record ``get`` returned."""
        consumer = self._check()
        if self._group is None:
            raise BusError("commit needs a consumer group")
        if offsets is None:
            offsets = {TopicPartition(t, p): o + 1 for (t, p), o in self._delivered.items()}
        if not offsets:
            return
        with _mapped(f"commit for group {self._group!r}"):
            await consumer.commit({KafkaTP(tp.topic, tp.partition): o for tp, o in offsets.items()})

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset of ``tp`` (None without a group or commit)."""
        consumer = self._check()
        if self._group is None:
            return None
        with _mapped(f"committed offset of {tp}"):
            offset = await consumer.committed(KafkaTP(tp.topic, tp.partition))
        return None if offset is None or offset < 0 else int(offset)

    def _forget_buffered(self, tps: set[TopicPartition] | None = None) -> None:
        if tps is None:
            self._buf.clear()
        else:
            self._buf = deque(
                r for r in self._buf if TopicPartition(r.topic, r.partition) not in tps
            )

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        """Make the next ``get`` on ``tp`` return the record at ``offset``."""
        consumer = self._check()
        ktp = KafkaTP(tp.topic, tp.partition)
        if ktp not in consumer.assignment():
            raise BusError(f"{tp} is not assigned to this subscriber")
        with _mapped(f"seek {tp}"):
            consumer.seek(ktp, max(0, offset))
        self._forget_buffered({tp})

    async def seek_to_time(self, timestamp_ms: int) -> None:
        """Seek every assigned partition to its first record at or after ``timestamp_ms``."""
        consumer = self._check()
        tps = list(consumer.assignment())
        if not tps:
            return
        with _mapped("seek to time"):
            found = await consumer.offsets_for_times({tp: timestamp_ms for tp in tps})
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                hit = found.get(tp)
                consumer.seek(tp, hit.offset if hit is not None else ends[tp])
        self._forget_buffered()

    async def end_offsets(self) -> dict[TopicPartition, int]:
        """The next offset of each assigned partition (its high watermark)."""
        consumer = self._check()
        tps = list(consumer.assignment())
        if not tps:
            return {}
        with _mapped("end offsets"):
            ends = await consumer.end_offsets(tps)
        return {TopicPartition(tp.topic, tp.partition): int(o) for tp, o in ends.items()}

    async def close(self) -> None:
        """Leave the group (its partitions go to the other members) and disconnect."""
        if self._closed:
            return
        self._closed = True
        self._buf.clear()
        self._bus._subs.discard(self)
        await _quietly(self._consumer.stop())
