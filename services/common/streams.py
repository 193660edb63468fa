"""Chunked messages over either bus: publish a large message, receive it whole."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flbus.port import Headers, LogBus, PubSubBus
from schemas.chunking import DEFAULT_MAX_CHUNK_BYTES, encode_chunked


async def publish_log_chunked(
    bus: LogBus,
    topic: str,
    msg: Any,
    *,
    stream_id: str,
    key: bytes | None,
    headers: Headers = (),
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
) -> int:
    """Publish ``msg`` as Chunk records with one key (so they stay in order); return the count."""
    chunks = encode_chunked(msg, stream_id, max_chunk_bytes)
    for data in chunks:
        await bus.publish(topic, data, key=key, headers=headers)
    return len(chunks)


async def publish_pubsub_chunked(
    bus: PubSubBus,
    topic_for: Callable[[int], str],
    msg: Any,
    *,
    stream_id: str,
    headers: Headers = (),
    retain: bool = False,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
) -> int:
    """Publish ``msg`` as chunks, chunk ``seq`` on ``topic_for(seq)``; return the count.

    A constant ``topic_for`` sends every chunk to one topic; per-seq topics
    (retained model versions) keep every chunk retained.
    """
    chunks = encode_chunked(msg, stream_id, max_chunk_bytes)
    for i, data in enumerate(chunks):
        await bus.publish(topic_for(i), data, headers=headers, retain=retain)
    return len(chunks)
