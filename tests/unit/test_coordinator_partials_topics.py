"""Partials travel on one topic per hospital; a partial on another hospital's topic is refused.

Broker ACLs let each aggregator write only its own ``fl.v1.partials.{hospital}``;
the coordinator holds up its end by refusing a partial that names another
hospital than its topic's (dead-lettered as ``invalid``, counted).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from schemas import PartialAggregate, Tensors, decode, topics
from schemas.dead_letter import DeadLetter
from services.coordinator.plans import tensor_specs
from tests.support.coordinator import MODEL, Harness, running_coordinator

pytestmark = pytest.mark.unit


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_coordinator(tmp_path) as h:
        yield h


async def test_coordinator_refuses_a_partial_on_another_hospitals_topic(harness: Harness) -> None:
    h = harness
    # Prepare: h0's aggregator (or whoever can write h0's topic) claims to be h1, first.
    v0 = await h.next_version()
    plan = await h.next_plan("selecting")
    size = v0.tensors.flat.size
    specs = tensor_specs(h.rounds.manifest)
    forged = PartialAggregate(
        MODEL, plan.round_id, plan.base_version, "h1", 2, 1000, 500.0, 1.0, 0,
        Tensors(specs, np.full(size, -100_000.0, np.float32)),
    )  # fmt: skip

    # Execute
    await h.send(forged, on="h0")
    await h.partial(plan, "h0", np.ones(size, np.float32), n=10)
    await h.partial(plan, "h1", np.ones(size, np.float32), n=10)
    v1 = await h.next_version()

    # Assert: the version is the genuine partials' mean; the forgery is a counted dead letter.
    np.testing.assert_allclose(v1.tensors.flat, v0.tensors.flat + 1.0, atol=1e-5)
    assert dict(h.coordinator.errors) == {"invalid": 1}
    async with await h.bus.subscribe([topics.KAFKA_DEAD_LETTERS]) as sub:
        record = await sub.get(5)
    assert record is not None
    letter = decode(record.value, DeadLetter)
    assert (letter.origin_topic, letter.reason) == (topics.partials_topic("h0"), "invalid")
