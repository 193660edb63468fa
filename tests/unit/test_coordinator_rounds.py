"""The coordinator on the in-memory log: rounds open, close on partials, abandon on silence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from flbus.memory import MemoryLog
from flsim.datasets import model_dataset
from flstore import FileModelStore
from modelzoo import get_spec
from schemas import (
    AuditEvent,
    PartialAggregate,
    RoundPlan,
    Tensors,
    decode,
    encode,
    topics,
)
from services.common.streams import publish_log_chunked
from services.coordinator.app import build
from services.coordinator.config import CoordinatorConfig, RoundSettings
from services.coordinator.coordinator import Coordinator
from services.coordinator.evaluation import OnnxEvaluator
from services.coordinator.plans import tensor_specs
from tests.support.coordinator import MODEL, FakeClock, Harness, running_coordinator
from tests.support.signing import SIGNER

pytestmark = pytest.mark.unit


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_coordinator(tmp_path) as h:
        yield h


async def test_coordinator_announces_version_zero_and_opens_round(harness: Harness) -> None:
    v0 = await harness.next_version()
    plan = await harness.next_plan("selecting")
    assert v0.version == 0 and v0.tensors.flat.size == get_spec(MODEL).param_manifest().total_size
    assert plan.round_id == 1 and plan.base_version == 0
    assert plan.hospitals == ("h0", "h1") and plan.targets == (4, 4)
    assert plan.admission_probability == 1.0


async def test_coordinator_combines_partials_weighted_by_examples(harness: Harness) -> None:
    v0 = await harness.next_version()
    plan = await harness.next_plan("selecting")
    size = v0.tensors.flat.size
    await harness.partial(plan, "h0", np.full(size, 1.0, np.float32), n=30)
    await harness.partial(plan, "h1", np.full(size, -1.0, np.float32), n=10)
    v1 = await harness.next_version()
    expected = v0.tensors.flat + 0.5  # (30*1 + 10*-1) / 40
    np.testing.assert_allclose(v1.tensors.flat, expected, atol=1e-6)
    assert v1.version == 1 and v1.parent_version == 0 and v1.round_id == 1
    assert "accuracy" in v1.metric_names
    record, _ = harness.store.get(MODEL, 1)
    assert record.parent_version == 0 and 0 <= record.metrics["accuracy"] <= 1
    # The stored ONNX model serves the new weights: its test accuracy is the recorded one.
    session = ort.InferenceSession(harness.store.onnx_model(MODEL, 1))
    data = model_dataset(get_spec(MODEL))
    (logits,) = session.run(None, {session.get_inputs()[0].name: data.X})
    assert float((logits.argmax(axis=1) == data.y).mean()) == pytest.approx(
        record.metrics["accuracy"]
    )
    done = await harness.next_plan("done")
    nxt = await harness.next_plan("selecting")
    assert done.round_id == 1 and nxt.round_id == 2 and nxt.base_version == 1


async def test_coordinator_closes_at_deadline_without_silent_hospital(harness: Harness) -> None:
    v0 = await harness.next_version()
    plan = await harness.next_plan("selecting")
    await harness.partial(plan, "h0", np.ones(v0.tensors.flat.size, np.float32), n=8, updates=4)
    await asyncio.sleep(0.05)
    harness.clock.now = plan.deadline_ms + 600  # past deadline + grace
    v1 = await harness.next_version()
    summary = harness.coordinator.models[MODEL].history[-1]
    assert v1.version == 1 and summary.outcome == "done"
    assert summary.reported == {"h0": 4}


async def test_coordinator_abandons_round_without_quorum(harness: Harness) -> None:
    plan = await harness.next_plan("selecting")
    harness.clock.now = plan.deadline_ms + 600
    abandoned = await harness.next_plan("abandoned")
    assert abandoned.round_id == 1 and "no updates from h0, h1" in abandoned.reason
    nxt = await harness.next_plan("selecting")
    assert nxt.round_id == 2 and nxt.base_version == 0


async def test_coordinator_survives_garbage_on_its_topics(harness: Harness) -> None:
    v0 = await harness.next_version()
    plan = await harness.next_plan("selecting")
    await harness.bus.publish(topics.partials_topic("h0"), b"\x00garbage")
    await harness.bus.publish(topics.KAFKA_AUDIT, b"")
    await harness.partial(plan, "h0", np.ones(v0.tensors.flat.size, np.float32), n=4)
    await harness.partial(plan, "h1", np.ones(v0.tensors.flat.size, np.float32), n=4)
    v1 = await harness.next_version()
    assert v1.version == 1
    assert sum(harness.coordinator.errors.values()) == 2


async def test_coordinator_counts_each_admitted_device_once(harness: Harness) -> None:
    v0 = await harness.next_version()
    plan = await harness.next_plan("selecting")
    for hospital, device in (("h0", "d1"), ("h0", "d1"), ("h1", "d2")):  # d1 checked in twice
        event = AuditEvent(
            "device.admitted",
            MODEL,
            plan.round_id,
            hospital,
            device,
            "selected",
            "",
            harness.clock.now,
        )
        await harness.bus.publish(topics.KAFKA_AUDIT, encode(event), key=MODEL.encode())
    rounds = harness.coordinator.models[MODEL]
    async with asyncio.timeout(5):  # topics are not ordered among each other
        while rounds.summary is None or sum(rounds.summary.admitted.values()) < 2:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # the duplicate has had its chance to be counted
    await harness.partial(plan, "h0", np.ones(v0.tensors.flat.size, np.float32), n=4)
    await harness.partial(plan, "h1", np.ones(v0.tensors.flat.size, np.float32), n=4)
    await harness.next_version()
    assert harness.coordinator.models[MODEL].history[-1].admitted == {"h0": 1, "h1": 1}


async def test_restarted_coordinator_resumes_version_round_and_optimizer(tmp_path: Path) -> None:
    bus, clock, store = MemoryLog(), FakeClock(), FileModelStore(tmp_path / "registry")
    await bus.start()
    settings = RoundSettings(rounds=1, round_timeout_ms=10_000, selection_window_ms=1_000,
                             server_optimizer="fedadam")  # fmt: skip
    config = CoordinatorConfig((MODEL,), ("h0",), settings, {"h0": 2},
                               artifacts_dir=tmp_path / "artifacts", tick_ms=5,
                               signing_key=SIGNER)  # fmt: skip
    evaluator = OnnxEvaluator({MODEL: model_dataset(get_spec(MODEL))})
    plans = await bus.subscribe([topics.KAFKA_ROUND_PLANS])

    async def one_round() -> tuple[Coordinator, RoundPlan]:
        coordinator = build(config, bus, store, evaluator, clock)
        task = asyncio.create_task(coordinator.run(asyncio.Event()))
        while True:
            record = await plans.get(5)
            assert record is not None
            plan = decode(record.value, RoundPlan)
            if plan.state == "selecting":
                break
        rounds = coordinator.models[MODEL]
        tensors = Tensors(tensor_specs(rounds.manifest), np.full(rounds.weights.size, 10.0, "f4"))
        partial = PartialAggregate(
            MODEL, plan.round_id, plan.base_version, "h0", 2, 10, 5.0, 1.0, 0, tensors
        )
        sid = f"{MODEL}/r{plan.round_id}/h0"
        await publish_log_chunked(
            bus, topics.partials_topic("h0"), partial, stream_id=sid, key=MODEL.encode()
        )
        async with asyncio.timeout(10):
            await task  # rounds=1: the coordinator finishes after one round
        return coordinator, plan

    _, plan1 = await one_round()
    second, plan2 = await one_round()  # a new process on the same registry and log

    assert (plan1.round_id, plan1.base_version) == (1, 0)
    assert (plan2.round_id, plan2.base_version) == (2, 1)  # numbering and lineage go on
    state = second.models[MODEL].opt_state
    assert state.step == 2 and state.m is not None  # Adam's moments were restored, then stepped
    assert [r.version for r in store.versions(MODEL)] == [0, 1, 2]
    await bus.stop()
