"""The coordinator checks each partial before combining it: a bad one is refused and audited.

The round goes on with the other hospitals, or is abandoned with the refusal
as its reason when quorum is lost; no non-finite version is ever stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from flcore.close import BaseVersion, next_version
from flcore.errors import NonFiniteVersion
from flcore.master import PartialSum
from flcore.server_opt import ServerOptState, make_server_optimizer
from flstore import MemoryModelStore, VersionRecord
from modelzoo import unflatten
from schemas import AuditEvent, PartialAggregate, RoundPlan, Tensors, TensorSpec, decode, topics
from services.coordinator.plans import tensor_specs
from tests.support.coordinator import MODEL, Harness, running_coordinator

pytestmark = pytest.mark.unit


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_coordinator(tmp_path) as h:
        yield h


def _partial(
    h: Harness, plan: RoundPlan, hospital: str, flat: np.ndarray, **kw: object
) -> PartialAggregate:
    msg = PartialAggregate(
        MODEL, plan.round_id, plan.base_version, hospital, 2, 8, 4.0, 1.0, 0,
        Tensors(tensor_specs(h.rounds.manifest), flat.astype(np.float32)),
    )  # fmt: skip
    return dataclasses.replace(msg, **kw)  # type: ignore[arg-type]


async def _refusals(h: Harness, count: int) -> list[AuditEvent]:
    sub = await h.bus.subscribe([topics.KAFKA_AUDIT], start="earliest")
    out: list[AuditEvent] = []
    async with asyncio.timeout(5):
        while len(out) < count:
            record = await sub.get(5)
            assert record is not None
            event = decode(record.value, AuditEvent)
            if event.kind == "partial.refused":
                out.append(event)
    await sub.close()
    return out


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("short", "bad_shape"),
        ("nan", "non_finite"),
        ("billion_examples", "implausible_count"),
        ("too_many_updates", "implausible_count"),
    ],
)
async def test_a_bad_partial_is_refused_and_the_round_closes_with_the_others(
    harness: Harness, bad: str, reason: str
) -> None:
    v0 = await harness.next_version()
    plan = await harness.next_plan("selecting")
    size = v0.tensors.flat.size
    good = _partial(harness, plan, "h1", np.full(size, 8.0), num_updates=4)  # delta 1
    if bad == "short":
        flat = np.ones(size - 3, np.float32)
        msg = dataclasses.replace(
            good, hospital_id="h0", tensors=Tensors((TensorSpec("w", (size - 3,)),), flat)
        )
    elif bad == "nan":
        msg = _partial(harness, plan, "h0", np.full(size, np.nan))
    elif bad == "billion_examples":
        msg = _partial(harness, plan, "h0", np.ones(size), num_examples=10**9)
    else:
        msg = _partial(harness, plan, "h0", np.ones(size), num_updates=10**6)
    await harness.send(msg)
    await harness.send(good)
    v1 = await harness.next_version()
    np.testing.assert_allclose(v1.tensors.flat, v0.tensors.flat + 1.0, atol=1e-5)  # h1 alone
    (refusal,) = await _refusals(harness, 1)
    assert refusal.reason == reason and refusal.round_id == plan.round_id
    assert refusal.detail.startswith("h0: ")
    summary = harness.rounds.history[-1]
    assert summary.outcome == "done" and set(summary.refused) == {"h0"}
    assert summary.reported == {"h1": 4}


async def test_an_all_nan_partial_never_becomes_a_stored_version(harness: Harness) -> None:
    v0 = await harness.next_version()
    plan = await harness.next_plan("selecting")
    nan = np.full(v0.tensors.flat.size, np.nan)
    await harness.send(_partial(harness, plan, "h0", nan))
    await harness.send(_partial(harness, plan, "h1", nan))
    abandoned = await harness.next_plan("abandoned")
    assert abandoned.round_id == plan.round_id
    assert "partials refused: h0: non_finite" in abandoned.reason
    nxt = await harness.next_plan("selecting")
    assert nxt.base_version == 0
    latest = harness.store.latest(MODEL)
    assert latest is not None and latest.version == 0


def test_the_close_step_refuses_to_make_a_non_finite_version() -> None:
    size, fedavg = 5, make_server_optimizer("fedavg")
    base = BaseVersion(MODEL, 3, np.zeros(size, np.float32), ServerOptState())
    near_max = BaseVersion(MODEL, 3, np.full(size, 3e38, np.float32), ServerOptState())
    cases = [
        (base, PartialSum("h0", np.full(size, np.nan), 10, 2, 1.0)),
        (near_max, PartialSum("h0", np.full(size, 3e38), 1, 1, 1.0)),  # overflows float32
        (base, PartialSum("h0", np.ones(size), 10, 2, float("nan"))),
    ]
    for start, partial in cases:
        with pytest.raises(NonFiniteVersion):
            next_version(start, [partial], fedavg, round_id=4, created_at_ms=0)


async def test_a_stored_non_finite_version_is_quarantined_not_fatal(tmp_path: Path) -> None:
    store = MemoryModelStore()
    async with running_coordinator(tmp_path, store=store) as h:
        v0 = await h.next_version()
        manifest = h.rounds.manifest
    # A store holding a NaN version (as an unchecked close once wrote one).
    bad = VersionRecord(MODEL, 1, 0, 1, 0, {"accuracy": float("nan"), "train_loss": 0.5})
    store.put(bad, unflatten(np.full(manifest.total_size, np.nan, np.float32), manifest))
    async with running_coordinator(tmp_path, store=store) as h:
        served = await h.next_version()
        plan = await h.next_plan("selecting")
    assert served.version == 2 and plan.base_version == 2
    np.testing.assert_array_equal(served.tensors.flat, v0.tensors.flat)
    record = store.latest(MODEL)
    assert record is not None and record.parent_version == 0 and "quarantined v1" in record.note
