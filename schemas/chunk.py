"""Chunk: one bounded piece of a large encoded message (update, model version)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from schemas import limits as L
from schemas._base import check_types, message, non_empty
from schemas.errors import InconsistentChunkError, ValidationError

DIGEST_BYTES = 16  # xxh3_128, big-endian canonical form


@message(
    version=1,
    limits={
        "stream_id": L.Bound(max_bytes=L.STREAM_ID_BYTES),
        "kind": L.CODE,
        "total": L.Bound(max_value=L.MAX_CHUNKS),
        "total_bytes": L.Bound(max_value=L.MAX_STREAM_BYTES),
        "chunk_size": L.Bound(max_value=L.MAX_CHUNK_SIZE),
        "digest": L.Bound(max_bytes=DIGEST_BYTES),
        "payload": L.Bound(max_bytes=L.MAX_CHUNK_SIZE),
    },
)
@dataclass(frozen=True, slots=True)
class Chunk:
    """Piece ``seq`` of ``total``: bytes [seq*chunk_size, +len(payload)) of the whole payload."""

    stream_id: str
    kind: str
    seq: int
    total: int
    total_bytes: int
    chunk_size: int
    digest: bytes
    payload: bytes  # decoded as a read-only memoryview into the received message

    # Fields the codec decodes as zero-copy memoryviews instead of bytes.
    VIEW_FIELDS: ClassVar[frozenset[str]] = frozenset({"payload"})

    def __post_init__(self) -> None:
        check_types(self)
        non_empty(self, "stream_id", "kind")
        if len(self.digest) != DIGEST_BYTES:
            raise ValidationError(
                "digest", f"must be {DIGEST_BYTES} bytes, got {len(self.digest)}", "Chunk"
            )
        check_geometry(
            self.stream_id,
            self.seq,
            self.total,
            self.total_bytes,
            self.chunk_size,
            len(self.payload),
        )


def check_geometry(
    stream_id: str, seq: int, total: int, total_bytes: int, chunk_size: int, size: int
) -> None:
    """Raise InconsistentChunkError unless seq/total/sizes describe one valid chunk."""
    where = f"stream {stream_id!r} chunk {seq}"
    if chunk_size < 1 or total_bytes < 0:
        raise InconsistentChunkError(
            f"{where}: chunk_size {chunk_size} / total_bytes {total_bytes} out of range"
        )
    expected_total = max(1, -(-total_bytes // chunk_size))
    if total != expected_total:
        raise InconsistentChunkError(
            f"{where}: total {total} but {total_bytes} bytes in chunks of {chunk_size} "
            f"make {expected_total}"
        )
    if not 0 <= seq < total:
        raise InconsistentChunkError(f"{where}: seq out of range [0, {total})")
    expected_size = min(chunk_size, total_bytes - seq * chunk_size)
    if size != expected_size:
        raise InconsistentChunkError(f"{where}: payload is {size} bytes, expected {expected_size}")
