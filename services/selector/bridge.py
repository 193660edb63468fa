"""Service plane -> devices: the latest plan per model and retained plans, versions, artifacts.

State here is a cache of Kafka (rebuilt by reading the topics from the start),
never the selector's own: the latest RoundPlan per model, the newest version
and artifact bundle forwarded per model, and at most one incomplete stream per
model and topic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flbus.port import Record
from schemas import Chunk, ModelVersion, RoundPlan, decode
from schemas.chunking import digest
from schemas.errors import DigestMismatchError, InconsistentChunkError, UnknownMessageError
from schemas.topics import (
    artifact_topic,
    check_id,
    model_chunk_topic,
    model_manifest_topic,
    plan_topic,
)
from services.selector.outputs import ToDevice


class PlanBook:
    """The latest RoundPlan of each model; an older round never replaces a newer one."""

    def __init__(self) -> None:
        self.plans: dict[str, RoundPlan] = {}

    def selecting(self, model: str) -> bool:
        """Whether the latest plan of ``model`` admits devices."""
        plan = self.plans.get(model)
        return plan is not None and plan.state == "selecting"

    def offer(self, record: Record) -> list[ToDevice]:
        """Take a ``fl.v1.round-plans`` record; return the retained republish if it is newest."""
        plan = decode(record.value, RoundPlan)
        current = self.plans.get(plan.model)
        if current is not None and plan.round_id < current.round_id:
            return []
        self.plans[plan.model] = plan
        return [ToDevice(plan_topic(plan.model), record.value, "plan", retain=True)]


def version_topic(model: str, seq: int) -> str:
    """Retained topic of chunk ``seq`` of the current model version."""
    return model_manifest_topic(model) if seq == 0 else model_chunk_topic(model, seq)


def bundle_topic(model: str, seq: int) -> str:
    """Retained topic of chunk ``seq`` of the model's artifact bundle."""
    return artifact_topic(model, 0, "bundle", seq)


@dataclass(slots=True)
class _Stream:
    stream_id: str
    total: int
    digest: bytes
    parts: dict[int, tuple[bytes, Chunk]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Forwarded:
    rank: int  # model version, or -1 for bundles (which are compared by digest)
    digest: bytes
    total: int


class StreamBridge:
    """Forward each complete, verified, newer chunked message retained, chunk bytes unchanged.

    Chunks are held until their stream is complete, then published with seq 0
    last, so a device that sees a new seq 0 finds every other chunk in place.
    """

    def __init__(self, kind: str, topic_for: Callable[[str, int], str], what: str) -> None:
        self.kind, self.topic_for, self.what = kind, topic_for, what
        self._open: dict[str, _Stream] = {}
        self.forwarded: dict[str, _Forwarded] = {}

    def offer(self, record: Record) -> list[ToDevice]:
        """Take one Chunk record (key = model); return the publishes once a stream completes."""
        chunk = decode(record.value, Chunk)
        if chunk.kind != self.kind:
            raise UnknownMessageError(f"expected chunks of {self.kind}, got {chunk.kind}")
        model = check_id((record.key or b"").decode(errors="replace"), "key")
        st = self._open.get(model)
        if st is None or st.stream_id != chunk.stream_id:
            st = self._open[model] = _Stream(chunk.stream_id, chunk.total, bytes(chunk.digest))
        elif (st.total, st.digest) != (chunk.total, bytes(chunk.digest)):
            del self._open[model]
            raise InconsistentChunkError(f"stream {chunk.stream_id!r} changed total or digest")
        st.parts[chunk.seq] = (record.value, chunk)
        if len(st.parts) < st.total:
            return []
        del self._open[model]
        return self._complete(model, st)

    def _complete(self, model: str, st: _Stream) -> list[ToDevice]:
        ordered = [st.parts[i] for i in range(st.total)]
        payload = b"".join(c.payload for _, c in ordered)
        if digest(payload) != st.digest:
            raise DigestMismatchError(f"stream {st.stream_id!r}: reassembled digest differs")
        rank = self._rank(model, payload)
        last = self.forwarded.get(model)
        if last is not None and (
            rank < last.rank or (rank == last.rank and st.digest == last.digest)
        ):
            return []
        self.forwarded[model] = _Forwarded(rank, st.digest, st.total)
        outs = [
            ToDevice(self.topic_for(model, seq), raw, self.what, retain=True)
            for seq, (raw, _) in enumerate(ordered)
        ]
        clears = [
            ToDevice(self.topic_for(model, seq), b"", self.what + "_clear", retain=True)
            for seq in range(st.total, last.total if last else 0)
        ]
        return outs[1:] + clears + outs[:1]

    def _rank(self, model: str, payload: bytes) -> int:
        if self.kind != ModelVersion.__name__:
            return -1
        version = decode(payload, ModelVersion)
        if version.model != model:
            raise UnknownMessageError(f"record key {model!r} but ModelVersion of {version.model!r}")
        return version.version
