"""SIGKILL a hospital aggregator while updates arrive, restart it: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio

import numpy as np

from flcore.aggregation import StreamingWeightedSum
from schemas import ModelUpdate
from schemas.topics import updates_topic
from tests.faults.conftest import record_recovery
from tests.faults.harness import MODEL, Federation


def reference_partial(
    updates: list[ModelUpdate], rejected: set[str]
) -> tuple[np.ndarray, int, int, list[str]]:
    """The round's sum recomputed from the updates topic: folded in topic order, as uploaded.

    ``rejected`` are devices whose update the aggregator refused with an audited
    reason other than ``duplicate`` (a duplicate's first copy was counted).
    Returns the float32 sum, the update and example counts, and the devices counted.
    """
    acc: StreamingWeightedSum | None = None
    counted: list[str] = []
    examples = 0
    for u in updates:
        if u.device_id in rejected or u.device_id in counted:
            continue
        flat = np.array(u.tensors.flat, copy=True)
        acc = acc or StreamingWeightedSum(flat.size)
        acc.add(flat, u.num_examples)
        counted.append(u.device_id)
        examples += u.num_examples
    assert acc is not None, "no update of the round on the topic"
    return acc.weighted_sum().astype(np.float32), len(counted), examples, counted


async def test_aggregator_killed_mid_round_publishes_the_uninterrupted_partial(
    federation: Federation,
) -> None:
    # Slower devices spread one round's uploads over seconds, so the kill lands among them.
    federation.start(
        env={
            "devices": {"FL_MAX_SLOWDOWN": "60"},
            "aggregator-h0": {"FL_LOG_LEVEL": "debug"},  # update.accepted is a debug line
        }
    )
    agg = federation.roles["aggregator-h0"]
    await federation.wait_versions(1, timeout=120)

    accepted = await federation.wait_log(
        "aggregator-h0",
        lambda e: e.get("event") == "update.accepted" and e.get("round", 0) >= 2,
        timeout=60,
    )
    round_id = accepted["round"]
    killed_at = agg.kill()
    await asyncio.sleep(2.0)  # more uploads land on the topic while nobody folds them
    agg.start()

    plane = await federation.wait_versions(2, timeout=90, after_ms=killed_at)
    record_recovery("aggregator SIGKILL mid-round", plane.recovery_s(killed_at))
    updates_plane = await federation.plane(updates_topic("h0"))

    mine = [p for p in plane.partials() if p.hospital_id == "h0" and p.round_id == round_id]
    assert len(mine) == 1, f"h0 published {len(mine)} partials for round {round_id}"
    partial = mine[0]
    updates = [
        u
        for u in updates_plane.of(ModelUpdate)
        if u.model == MODEL and u.round_id == round_id and u.hospital_id == "h0"
    ]
    rejected = {
        a.device_id
        for a in plane.audit("update.rejected")
        if a.round_id == round_id and a.hospital_id == "h0" and a.reason != "duplicate"
    }
    want, count, examples, counted = reference_partial(updates, rejected)
    assert (partial.num_updates, partial.num_examples) == (count, examples), (
        f"partial counts {partial.num_updates} updates / {partial.num_examples} examples; "
        f"the topic holds {count} / {examples} from {counted}"
    )
    got = np.asarray(partial.tensors.flat, dtype=np.float32)
    assert got.tobytes() == want.tobytes(), f"max diff {np.max(np.abs(got - want))}"
    assert agg.exits == [-9] and agg.alive, agg.tail()
