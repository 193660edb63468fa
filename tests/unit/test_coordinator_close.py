"""Closing a round off the event loop: the coordinator serves on while a version is kept,
and a version that cannot be exported, scored or stored abandons its round, never hangs it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from flbus.errors import PublishError
from flcore.rounds import Phase
from flsim.datasets import model_dataset
from flstore import MemoryModelStore, StorageFailed, VersionRecord
from modelzoo import get_spec
from schemas import ModelVersion, RoundPlan, topics
from services.coordinator.evaluation import OnnxEvaluator
from tests.support.coordinator import MODEL, Harness, running_coordinator

pytestmark = pytest.mark.unit


class Gate:
    """Once ``hold`` is set, the next caller of ``pass_`` waits (in its thread) for ``release``."""

    def __init__(self) -> None:
        self.hold = False
        self.entered = threading.Event()
        self.release = threading.Event()
        self.threads: list[str] = []

    def pass_(self) -> None:
        self.threads.append(threading.current_thread().name)
        if self.hold:
            self.entered.set()
            if not self.release.wait(10):
                raise TimeoutError("the test never opened the gate")


class GatedEvaluator(OnnxEvaluator):
    def __init__(self, gate: Gate, fail: bool = False) -> None:
        super().__init__({MODEL: model_dataset(get_spec(MODEL))})
        self.gate, self.fail = gate, fail

    def evaluate(self, model: str, onnx_model: bytes) -> dict[str, float]:
        self.gate.pass_()
        if self.fail:
            raise RuntimeError("scoring crashed")
        return super().evaluate(model, onnx_model)


class GatedStore(MemoryModelStore):
    def __init__(self, gate: Gate, fail: bool = False) -> None:
        super().__init__()
        self.gate, self.fail = gate, fail

    def put(
        self, record: VersionRecord, weights: Mapping[str, np.ndarray], onnx_model: bytes = b""
    ) -> None:
        self.gate.pass_()
        if self.fail:
            raise StorageFailed("cannot write /registry/v1.npz: disk full")
        super().put(record, weights, onnx_model)


async def _report_both(h: Harness, plan: RoundPlan) -> None:
    size = h.rounds.weights.size
    await h.partial(plan, "h0", np.full(size, 0.1, np.float32), n=4)
    await h.partial(plan, "h1", np.full(size, 0.1, np.float32), n=4)


@pytest.mark.parametrize("slow", ["evaluate", "store"])
async def test_coordinator_serves_on_while_a_version_is_kept(tmp_path: Path, slow: str) -> None:
    gate = Gate()
    evaluator, store = OnnxEvaluator({MODEL: model_dataset(get_spec(MODEL))}), MemoryModelStore()
    if slow == "evaluate":
        evaluator = GatedEvaluator(gate)
    else:
        store = GatedStore(gate)
    keeper = ThreadPoolExecutor(1, thread_name_prefix="keeper")
    async with running_coordinator(tmp_path, store, evaluator, keeper) as h:
        await h.next_version()
        plan = await h.next_plan("selecting")
        gate.hold = True
        await _report_both(h, plan)
        assert await asyncio.to_thread(gate.entered.wait, 5), f"the close never reached {slow}"

        # Execute: while the version waits at the gate, a record arrives.
        await h.bus.publish(topics.partials_topic("h0"), b"\x00not a partial")
        async with asyncio.timeout(5):
            while not h.coordinator.errors:
                await asyncio.sleep(0.01)

        # Assert: it was handled during the close, and the round waited for its version.
        assert sum(h.coordinator.errors.values()) == 1
        assert h.rounds.state is not None and h.rounds.state.phase is Phase.CLOSING
        assert h.rounds.closing and h.rounds.version == 0 and h.rounds.history == []
        gate.release.set()
        v1 = await h.next_version()
        done = await h.next_plan("done")
        nxt = await h.next_plan("selecting")
    assert (v1.version, done.round_id, nxt.round_id, nxt.base_version) == (1, 1, 2, 1)
    assert gate.threads[-1].startswith("keeper")  # kept in the executor the root was given
    keeper.shutdown()
    assert [r.version for r in store.versions(MODEL)] == [0, 1]


@pytest.mark.parametrize(
    ("stage", "cause"),
    [("evaluate", "RuntimeError: scoring crashed"), ("store", "StorageFailed: cannot write")],
)
async def test_coordinator_abandons_a_round_whose_version_cannot_be_kept(
    tmp_path: Path, stage: str, cause: str
) -> None:
    evaluator, store = GatedEvaluator(Gate()), GatedStore(Gate())
    failing = evaluator if stage == "evaluate" else store
    with capture_logs() as logs:
        async with running_coordinator(tmp_path, store=store, evaluator=evaluator) as h:
            await h.next_version()
            plan = await h.next_plan("selecting")
            failing.fail = True

            await _report_both(h, plan)
            abandoned = await h.next_plan("abandoned")
            nxt = await h.next_plan("selecting")
            failing.fail = False
            await _report_both(h, nxt)
            v1 = await h.next_version()

    assert abandoned.round_id == 1 and abandoned.reason.startswith(f"{stage} failed: {cause}")
    assert h.rounds.close_failures == {stage: 1}
    assert [s.outcome for s in h.rounds.history] == ["abandoned", "done"]
    assert (nxt.round_id, nxt.base_version) == (2, 0)  # the next round starts from version 0
    assert (v1.version, v1.round_id) == (1, 2)  # and its version takes the unused number
    failed = [e for e in logs if e["event"] == "round.close_failed"]
    assert len(failed) == 1 and failed[0]["stage"] == stage and failed[0]["round"] == 1
    assert failed[0]["log_level"] == "error"


async def test_coordinator_stops_with_the_round_done_when_a_kept_version_cannot_be_announced(
    tmp_path: Path,
) -> None:
    async def refuse(version: ModelVersion) -> None:
        raise PublishError("broker gone")

    with pytest.raises(PublishError, match="broker gone"):
        async with running_coordinator(tmp_path) as h:
            await h.next_version()
            plan = await h.next_plan("selecting")
            h.rounds.outbox.version = refuse  # type: ignore[method-assign]

            await _report_both(h, plan)
            async with asyncio.timeout(5):
                while not h.rounds.history:
                    await asyncio.sleep(0.01)

    # The failure ended the coordinator (above); the version is stored, so the round
    # is done, and a restarted coordinator announces version 1.
    assert h.rounds.state is not None and h.rounds.state.phase is Phase.DONE
    assert [r.version for r in h.store.versions(MODEL)] == [0, 1]
    assert [s.outcome for s in h.rounds.history] == ["done"]


async def test_audit_of_a_reason_longer_than_a_code_keeps_it_whole_in_the_detail() -> None:
    # Prepare: an abandonment reason listing refused partials of many hospitals.
    from flbus.memory import MemoryBus
    from schemas import AuditEvent, decode, topics
    from schemas.limits import CODE_BYTES
    from services.coordinator.coordinator import KafkaOutbox
    from tests.support.signing import SIGNER

    memory = MemoryBus()
    await memory.log.start()
    reason = "deadline; partials refused: " + "; ".join(f"h{i}: base_version" for i in range(20))
    # Execute
    await KafkaOutbox(memory.log, lambda: 5, SIGNER).audit("round.abandoned", "m", 3, reason, "")
    # Assert: the event was written, its code cut to a code's size, the reason kept whole.
    sub = await memory.log.subscribe([topics.KAFKA_AUDIT], group="t")
    record = await sub.get(2.0)
    assert record is not None
    event = decode(record.value)
    assert isinstance(event, AuditEvent) and len(event.reason.encode()) <= CODE_BYTES
    assert event.reason and reason in event.detail
    await memory.stop()
