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

The subscription side is ``flbus.kafka_consumer``; aiokafka's errors become
ours in one place, ``flbus.kafka_errors``. With ``credentials`` every client
authenticates with SASL/SCRAM (``flbus.kafka_auth``); a refused login or an
ACL denial is an AccessDeniedError.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as KafkaTP
from aiokafka import errors as kerr
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from flbus.errors import (
    AccessDeniedError,
    BrokerUnavailableError,
    BusClosedError,
    TopicError,
)
from flbus.kafka_auth import KafkaCredentials, client_security, refusal
from flbus.kafka_consumer import KafkaSubscription, all_partitions
from flbus.kafka_errors import denied, kafka_error, mapped, quietly
from flbus.port import (
    Headers,
    LogBus,
    LogSubscription,
    Published,
    Start,
    TopicPartition,
)

log = structlog.get_logger(__name__)

_LEGAL_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


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
        credentials: KafkaCredentials | None = None,
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
        credentials:
            SASL/SCRAM user and password (None: PLAINTEXT, no authentication).
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
        self._credentials = credentials
        self._security = client_security(credentials)
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._known_topics: set[str] = set()
        self._subs: set[KafkaSubscription] = set()
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
            **self._security,
        )
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap,
            client_id=f"{self._client_id}-admin",
            **self._security,
        )
        try:
            async with asyncio.timeout(self._connect_timeout):
                await producer.start()
                await admin.start()
        except (kerr.KafkaError, OSError, TimeoutError) as exc:
            await quietly(producer.stop())
            await quietly(admin.close())
            why = str(exc) if denied(exc) else await refusal(self._bootstrap, self._credentials)
            if why:
                raise AccessDeniedError(f"Kafka at {self._bootstrap}: {why}") from None
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
            await quietly(self._producer.stop())
        if self._admin is not None:
            await quietly(self._admin.close())
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
        with mapped(f"create topic {name!r}"):
            response = await admin.create_topics([topic])
        for entry in response.topic_errors:
            code = entry[1]
            if code not in (0, kerr.TopicAlreadyExistsError.errno):
                exc = kerr.for_code(code)(entry[2] if len(entry) > 2 else "")
                raise kafka_error(f"create topic {name!r}", exc)
        self._known_topics.add(name)

    async def delete_records(
        self, before: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """Delete every record below offset ``before[tp]`` (Kafka's DeleteRecords, e.g. for
        ``flctl dlq purge``); return each partition's new log start offset.

        Kafka-only (not part of the LogBus port): roles never delete records.
        """
        _, admin = self._open()
        request = {KafkaTP(tp.topic, tp.partition): RecordsToDelete(o) for tp, o in before.items()}
        if not request:
            return {}
        with mapped(f"delete records of {sorted({tp.topic for tp in before})}"):
            starts = await admin.delete_records(request)
        return {TopicPartition(tp.topic, tp.partition): int(o) for tp, o in starts.items()}

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
        try:  # inline, not mapped(): this is the hot path
            meta = await producer.send_and_wait(
                topic,
                value,
                key=key,
                partition=partition,
                headers=list(headers) if headers else None,
            )
        except (kerr.KafkaError, OSError, TimeoutError, AssertionError) as exc:
            raise kafka_error(f"publish to {topic!r}", exc) from exc
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
            **self._security,
        )
        sub = KafkaSubscription(consumer, group, self._subs.discard)
        try:
            async with asyncio.timeout(self._connect_timeout):
                with mapped(f"subscribe to {list(topics)}"):
                    await consumer.start()
                    if group is None:
                        tps = await all_partitions(producer, topics)
                        consumer.assign(tps)
                        for tp in tps:
                            await consumer.position(tp)  # resolve earliest/latest now
                    else:
                        # A topic created a moment ago may not be in every broker's
                        # metadata yet; a group joined then gets no partitions of it and
                        # would not look again for metadata_max_age_ms. Wait for it.
                        await all_partitions(producer, topics)
                        consumer.subscribe(list(topics), listener=sub)
        except TimeoutError:
            await quietly(consumer.stop())
            raise BrokerUnavailableError(
                f"subscribing to {list(topics)} at {self._bootstrap} took over "
                f"{self._connect_timeout:g}s"
            ) from None
        except BaseException:
            await quietly(consumer.stop())
            raise
        self._subs.add(sub)
        return sub
