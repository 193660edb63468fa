"""A coordinator running on the in-memory log, with a hand-set clock: what its tests drive."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flbus.memory import MemoryLog
from flbus.port import LogBus, LogSubscription
from flsim.datasets import model_dataset
from flstore import MemoryModelStore, ModelStore
from modelzoo import flatten, get_spec
from schemas import (
    CheckIn,
    ModelVersion,
    PartialAggregate,
    RoundPlan,
    Tensors,
    decode,
    encode,
    topics,
)
from schemas.chunking import ChunkedReceiver
from services.common.streams import publish_log_chunked
from services.coordinator.app import build
from services.coordinator.config import CoordinatorConfig, RoundSettings
from services.coordinator.coordinator import Coordinator
from services.coordinator.evaluation import Evaluator, OnnxEvaluator
from services.coordinator.model_rounds import ModelRounds
from services.coordinator.plans import tensor_specs
from tests.support.signing import SIGNER

MODEL = "breast_cancer"


class FakeClock:
    """Milliseconds that move only when a test sets ``now``."""

    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


@dataclass
class Harness:
    """A running coordinator of ``MODEL`` for hospitals h0 and h1, and its output topics."""

    bus: LogBus
    clock: FakeClock
    coordinator: Coordinator
    store: ModelStore
    plans: LogSubscription
    versions: LogSubscription

    @property
    def rounds(self) -> ModelRounds:
        """The model's round lifecycle."""
        return self.coordinator.models[MODEL]

    async def next_plan(self, state: str | None = None) -> RoundPlan:
        """The next published plan (in ``state``, skipping others)."""
        while True:
            record = await self.plans.get(5)
            assert record is not None, "no round plan published"
            plan = decode(record.value, RoundPlan)
            if state is None or plan.state == state:
                return plan

    async def next_version(self) -> ModelVersion:
        """The next announced model version."""
        rx = ChunkedReceiver()
        while True:
            record = await self.versions.get(5)
            assert record is not None, "no model version published"
            msg = rx.add(record.value, 0)
            if msg is not None:
                return msg

    async def partial(
        self, plan: RoundPlan, hospital: str, delta: np.ndarray, n: int, updates: int = 2
    ) -> None:
        """Publish ``hospital``'s partial: ``n`` examples that all moved by ``delta``."""
        specs = tensor_specs(self.rounds.manifest)
        msg = PartialAggregate(
            MODEL,
            plan.round_id,
            plan.base_version,
            hospital,
            updates,
            n,
            0.5 * n,
            1.0,
            0,
            Tensors(specs, (delta * n).astype(np.float32)),
        )
        await self.send(msg)

    async def send(self, msg: PartialAggregate, on: str | None = None) -> None:
        """Publish a partial aggregate as an aggregator does (chunked, keyed by model) on its
        hospital's partials topic, or on hospital ``on``'s."""
        await publish_log_chunked(
            self.bus,
            topics.partials_topic(on or msg.hospital_id),
            msg,
            stream_id=f"{MODEL}/r{msg.round_id}/{msg.hospital_id}",
            key=MODEL.encode(),
        )


def checkin(hospital: str, device: str, now_ms: int) -> bytes:
    """An encoded check-in of ``device`` for ``MODEL``, as a selector forwards it."""
    return encode(
        CheckIn(device, hospital, (MODEL,), "1.0", "1.0", True, True, True, 90.0, 512, now_ms)
    )


@contextlib.asynccontextmanager
async def running_coordinator(
    tmp_path: Path,
    store: ModelStore | None = None,
    evaluator: Evaluator | None = None,
    executor: Executor | None = None,
    *,
    bus: LogBus | None = None,
    clock: FakeClock | None = None,
    population: dict[str, int] | None = None,
    **settings: object,
) -> AsyncIterator[Harness]:
    """Build and run a coordinator (rounds forever, 10 s deadline); stop it on exit.

    Give ``bus`` (started) and ``clock`` to run it again on the same log, as a
    restarted process; ``population`` replaces the known 4 devices per
    hospital ({}: learnt from check-ins); ``settings`` override round settings.
    """
    own_bus = bus is None
    bus = bus if bus is not None else MemoryLog()
    clock = clock if clock is not None else FakeClock()
    store = store if store is not None else MemoryModelStore()
    if own_bus:
        await bus.start()
    round_settings = RoundSettings(
        **{
            "rounds": 0,
            "round_timeout_ms": 10_000,
            "selection_window_ms": 1_000,
            "close_grace_ms": 500,
            **settings,
        }  # type: ignore[arg-type]
    )
    config = CoordinatorConfig(
        (MODEL,),
        ("h0", "h1"),
        round_settings,
        {"h0": 4, "h1": 4} if population is None else population,
        artifacts_dir=tmp_path / "artifacts",
        tick_ms=5,
        signing_key=SIGNER,
    )
    if evaluator is None:
        evaluator = OnnxEvaluator({MODEL: model_dataset(get_spec(MODEL))})
    coordinator = build(config, bus, store, evaluator, clock, executor)
    plans = await bus.subscribe([topics.KAFKA_ROUND_PLANS])
    versions = await bus.subscribe([topics.KAFKA_MODEL_VERSIONS])
    stop = asyncio.Event()
    task = asyncio.create_task(coordinator.run(stop))
    try:
        yield Harness(bus, clock, coordinator, store, plans, versions)
    finally:
        stop.set()
        try:
            await task  # re-raises what ended the coordinator
        finally:
            await plans.close()
            await versions.close()
            if own_bus:
                await bus.stop()


async def plan_of(h: Harness, round_id: int, state: str) -> RoundPlan:
    """The next published plan of ``round_id`` in ``state``."""
    while True:
        plan = await h.next_plan(state)
        if plan.round_id == round_id:
            return plan


async def checkins(bus: LogBus, hospital: str, devices: range, now_ms: int) -> None:
    """Devices ``d<i>`` of ``hospital`` check in (as selectors forward check-ins)."""
    for d in devices:
        await bus.publish(topics.KAFKA_CHECKINS, checkin(hospital, f"d{d}", now_ms))


async def restart_mid_round(bus: LogBus, tmp_path: Path) -> None:
    """Stop a coordinator mid-round, publish the round's partials, start another: the
    second closes the round with them and plans the next from the learnt population."""
    clock, store = FakeClock(), MemoryModelStore()
    kw = {"bus": bus, "clock": clock, "store": store, "population": {}}
    async with running_coordinator(tmp_path, **kw) as first:  # type: ignore[arg-type]
        v0 = await first.next_version()
        plan = await plan_of(first, 1, "selecting")
        assert dict(zip(plan.hospitals, plan.targets, strict=True)) == {"h0": 1, "h1": 1}
        await checkins(bus, "h0", range(3), clock.now)  # learnt: 3 devices each
        await checkins(bus, "h1", range(3), clock.now)
        await asyncio.sleep(0.1)
    # The coordinator is down; the aggregators publish their partials of round 1.
    size = v0.tensors.flat.size
    partials_at = Harness(bus, clock, first.coordinator, store, first.plans, first.versions)
    await partials_at.partial(plan, "h0", np.full(size, 1.0, np.float32), n=10, updates=1)
    await partials_at.partial(plan, "h1", np.full(size, 3.0, np.float32), n=10, updates=1)
    async with running_coordinator(tmp_path, **kw) as second:  # type: ignore[arg-type]
        done = await plan_of(second, 1, "done")
        nxt = await plan_of(second, 2, "selecting")
        summary = second.rounds.history[0]
    assert done.reason == "all hospitals reported" and summary.reported == {"h0": 1, "h1": 1}
    latest = store.latest(MODEL)
    assert latest is not None and (latest.version, latest.round_id) == (1, 1)
    _, named = store.get(MODEL, 1)
    expected = v0.tensors.flat + 2.0  # (10 * 1 + 10 * 3) / 20: both partials count
    np.testing.assert_allclose(flatten(named, second.rounds.manifest), expected, atol=1e-5)
    assert nxt.base_version == 1
    # The population learnt before the restart plans round 2 (goal growth capped at 2x).
    assert dict(zip(nxt.hospitals, nxt.targets, strict=True)) == {"h0": 2, "h1": 2}
