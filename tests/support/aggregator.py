"""Shared scenario kit for the aggregator tests, in memory and on Kafka."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from flbus.memory import MemoryLog
from flbus.port import LogBus
from flcore.tokens import issue_token
from schemas import (
    AuditEvent,
    Chunk,
    ModelUpdate,
    ModelVersion,
    PartialAggregate,
    RoundPlan,
    Tensors,
    decode,
    encode,
)
from schemas.chunking import decode_chunked, encode_chunked
from schemas.topics import (
    KAFKA_AUDIT,
    KAFKA_MODEL_VERSIONS,
    KAFKA_ROUND_PLANS,
    partials_topic,
    updates_topic,
)
from services.aggregator.aggregator import Aggregator
from services.aggregator.app import build
from services.aggregator.config import AggregatorConfig
from services.common.streams import publish_log_chunked

SECRET = b"test-secret"
SHAPES = {"w": (3, 2), "b": (2,)}
SIZE = 8
SMALL_CHUNKS = 1400  # about 140 payload bytes per chunk: an update spans many records
T0 = 1_000_000


class World:
    """A hospital, a model and a bus; builds valid messages and runs aggregators on it."""

    def __init__(self, bus: LogBus | None = None, *, unique: bool = False) -> None:
        tag = uuid.uuid4().hex[:8] if unique else ""
        self.hospital, self.model = f"h{tag or '0'}", f"m{tag or 'lp'}"
        self.now = T0
        self.bus: LogBus = bus if bus is not None else MemoryLog(clock=self.clock)
        self.running: list[tuple[Aggregator, asyncio.Event, asyncio.Task[None]]] = []

    def clock(self) -> int:
        """The injected clock (ms)."""
        return self.now

    async def plan(
        self,
        round_id: int = 1,
        goal: int = 3,
        *,
        base_version: int = 0,
        clip_norm: float = 0.0,
        deadline_ms: int = T0 + 60_000,
        state: str = "training",
        aggregation: str = "fedavg",
        trim_fraction: float = 0.0,
        max_steps: int = 0,
    ) -> RoundPlan:
        """Publish a RoundPlan for this hospital (plus one other) on the round-plans topic."""
        plan = RoundPlan(
            self.model,
            round_id,
            base_version,
            state,
            1,
            max_steps,
            32,
            0.1,
            clip_norm,
            0.0,
            (self.hospital, "other"),
            (goal, 7),
            1.0,
            1.3,
            0.5,
            self.now,
            deadline_ms,
            "",
            aggregation,
            trim_fraction,
        )
        await self.bus.publish(KAFKA_ROUND_PLANS, encode(plan), key=self.model.encode())
        return plan

    async def version(self, version: int = 0) -> None:
        """Publish model version ``version`` (chunked) on the model-versions topic."""
        arrays = {k: np.full(s, float(version), np.float32) for k, s in SHAPES.items()}
        mv = ModelVersion(
            self.model, version, version - 1, -1, T0, (), (), "x", Tensors.from_dict(arrays)
        )
        key = self.model.encode()
        await publish_log_chunked(
            self.bus, KAFKA_MODEL_VERSIONS, mv, stream_id=f"{self.model}/v{version}", key=key
        )

    def update(
        self,
        device: str,
        delta: np.ndarray | None = None,
        *,
        round_id: int = 1,
        examples: int = 10,
        base_version: int = 0,
        secret: bytes = SECRET,
        loss: float = 0.5,
        seconds: float = 2.0,
        shapes: dict[str, tuple[int, ...]] | None = None,
    ) -> ModelUpdate:
        """A ModelUpdate with a token signed for exactly these claims."""
        shapes = shapes or SHAPES
        size = sum(int(np.prod(s)) for s in shapes.values())
        flat = np.asarray(delta if delta is not None else np.arange(size) + 1.0, np.float32)
        arrays, at = {}, 0
        for name, shape in shapes.items():
            n = int(np.prod(shape))
            arrays[name] = flat[at : at + n].reshape(shape)
            at += n
        token = issue_token(
            model=self.model,
            round_id=round_id,
            base_version=base_version,
            device_id=device,
            hospital_id=self.hospital,
            expires_at_ms=T0 + 3_600_000,
            secret=secret,
        )
        return ModelUpdate(
            self.model,
            round_id,
            base_version,
            device,
            self.hospital,
            examples,
            loss,
            seconds,
            token,
            f"{device}-{uuid.uuid4().hex[:6]}",
            Tensors.from_dict(arrays),
        )

    def chunks(self, update: ModelUpdate, max_chunk_bytes: int = 512 * 1024) -> list[bytes]:
        """The encoded Chunk records of an update."""
        return encode_chunked(update, update.update_id, max_chunk_bytes)

    async def send_raw(
        self, device: str, data: bytes, round_id: int = 1, token: bytes = b"\x01"
    ) -> None:
        """Publish one record on the updates topic with the selector's headers."""
        headers = (
            ("token", token.hex().encode()),
            ("model", self.model.encode()),
            ("round", str(round_id).encode()),
            ("base_version", b"0"),
        )
        await self.bus.publish(
            updates_topic(self.hospital), data, key=device.encode(), headers=headers
        )

    async def send(self, update: ModelUpdate, max_chunk_bytes: int = 512 * 1024) -> None:
        """Publish an update's chunks as the selector would."""
        for data in self.chunks(update, max_chunk_bytes):
            await self.send_raw(update.device_id, data, update.round_id, bytes(update.token))

    def config(self, **kw: Any) -> AggregatorConfig:
        """A config for this hospital with short start-up reads."""
        kw.setdefault("catch_up_idle_ms", 50)
        kw.setdefault("tick_ms", 10)
        return AggregatorConfig(hospital=self.hospital, token_secret=SECRET, **kw)

    async def start(self, **kw: Any) -> Aggregator:
        """Build an aggregator through the composition root and run it in the background."""
        agg = build(self.config(**kw), self.bus, self.clock)
        stop = asyncio.Event()
        task = asyncio.create_task(agg.run(stop))
        self.running.append((agg, stop, task))
        return agg

    async def stop(self, agg: Aggregator, *, crash: bool = False) -> None:
        """Stop an aggregator gracefully, or cancel it mid-flight (``crash``)."""
        for entry in list(self.running):
            if entry[0] is agg:
                self.running.remove(entry)
                if crash:
                    entry[2].cancel()
                else:
                    entry[1].set()
                await asyncio.gather(entry[2], return_exceptions=crash)

    async def read(self, topic: str) -> list[bytes]:
        """Every record value on ``topic`` so far."""
        sub = await self.bus.subscribe([topic])
        out: list[bytes] = []
        async with sub:
            while (
                r := await sub.get(0.3 if not isinstance(self.bus, MemoryLog) else 0)
            ) is not None:
                out.append(r.value)
        return out

    async def partials(self) -> list[PartialAggregate]:
        """This hospital's partials for this model, decoded."""
        streams: dict[str, list[bytes]] = {}
        for data in await self.read(partials_topic(self.hospital)):
            streams.setdefault(decode(data, Chunk).stream_id, []).append(data)
        found = [decode_chunked(c, PartialAggregate) for c in streams.values()]
        return [p for p in found if p.hospital_id == self.hospital and p.model == self.model]

    async def audits(self) -> list[AuditEvent]:
        """Audit events about this hospital."""
        events = [decode(d, AuditEvent) for d in await self.read(KAFKA_AUDIT)]
        return [e for e in events if e.hospital_id == self.hospital]


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> None:
    """Wait until ``check()`` (sync or async) is truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = check()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


def weighted_sum(updates: list[ModelUpdate]) -> np.ndarray:
    """The reference: sum of num_examples * delta in float64."""
    total: np.ndarray = np.sum(
        [u.num_examples * u.tensors.flat.astype(np.float64) for u in updates], axis=0
    )
    return total
