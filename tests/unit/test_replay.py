"""flctl replay reads a round back from the service plane."""

from __future__ import annotations

import io

import numpy as np
import pytest

from flbus.memory import MemoryLog
from flctl.replay import describe, print_facts, replay
from schemas import (
    AuditEvent,
    ModelVersion,
    PartialAggregate,
    RoundPlan,
    Tensors,
    TensorSpec,
    encode,
    topics,
)
from services.common.streams import publish_log_chunked

pytestmark = pytest.mark.unit


def _plan(round_id: int, state: str) -> RoundPlan:
    return RoundPlan("m1", round_id, round_id - 1, state, 1, 0, 32, 0.1, 0.0, 0.0, ("h0", "h1"),
                     (5, 5), 1.0, 1.3, 0.5, 1000, 9000, "")  # fmt: skip


async def test_replay_prints_one_round_in_log_order() -> None:
    clock = iter(range(1_000, 100_000, 10))
    bus = MemoryLog(clock=lambda: next(clock))
    await bus.start()
    tensors = Tensors((TensorSpec("w", (4,)),), np.ones(4, np.float32))
    await bus.publish(topics.KAFKA_ROUND_PLANS, encode(_plan(1, "selecting")), key=b"m1")
    await bus.publish(topics.KAFKA_ROUND_PLANS, encode(_plan(2, "selecting")), key=b"m1")
    admitted = AuditEvent("device.admitted", "m1", 2, "h0", "d1", "selected", "", 5)
    rejected = AuditEvent("update.rejected", "m1", 2, "h1", "d9", "bad_token", "forged", 6)
    for event in (admitted, rejected):
        await bus.publish(topics.KAFKA_AUDIT, encode(event), key=b"m1")
    await bus.publish(topics.KAFKA_AUDIT, b"\x00garbage")
    partial = PartialAggregate("m1", 2, 1, "h0", 1, 40, 20.0, 0.1, 1, tensors)
    await publish_log_chunked(
        bus, topics.partials_topic("h0"), partial, stream_id="m1/r2/h0", key=b"m1"
    )
    version = ModelVersion("m1", 2, 1, 2, 7, ("accuracy",), (0.875,), "abc", tensors)
    await publish_log_chunked(bus, topics.KAFKA_MODEL_VERSIONS, version, stream_id="m1/v2",
                              key=b"m1")  # fmt: skip

    facts, undecodable = await replay(bus, "m1", 2)

    texts = [f.text for f in facts]
    assert undecodable == 1
    assert [f.round_id for f in facts] == [2, 2, 2, 2, 2]  # round 1's plan left out
    assert texts[0].startswith("plan selecting: base v1, goals h0=5,h1=5")
    assert texts[1] == "device.admitted h0/d1 selected"
    assert texts[2] == "update.rejected h1/d9 bad_token - forged"
    assert texts[3] == "partial from h0: 1 updates, 40 examples, 1 rejected"
    assert texts[4] == "version v2 (from v1) accuracy 0.8750"
    out = io.StringIO()
    print_facts(facts, as_json=False, out=out)
    assert out.getvalue().count("\n") == 5 and "audit" in out.getvalue()
    await bus.stop()


def test_replay_prints_example_counts_as_integers() -> None:
    # Prepare: metrics as the coordinator publishes them (the wire carries floats)
    tensors = Tensors((TensorSpec("w", (4,)),), np.ones(4, np.float32))
    names, values = ("accuracy", "loss", "test_examples"), (0.875, 0.25, 360.0)
    version = ModelVersion("m1", 2, 1, 2, 7, names, values, "abc", tensors)

    # Execute
    described = describe(version)

    # Assert
    assert described is not None
    assert described[2] == "version v2 (from v1) accuracy 0.8750, loss 0.2500, test_examples 360"
