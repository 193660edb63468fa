"""The device's round protocol on the in-memory bus, the selector's side played by the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from device_sdk.ledger import RoundLedger
from device_sdk.trainer import Trainer
from device_sdk.wire import from_tensors, to_tensors
from flbus.memory import MemoryPubSub
from modelzoo import ParamManifest, generate_artifacts
from schemas import ModelUpdate, RetryAfter, Tensors, TensorSpec, TrainingFailure, decode, encode
from schemas.chunking import decode_chunked
from schemas.topics import plan_topic
from tests.support.device import (
    BAD,
    MODEL,
    FakeClock,
    bundle_of,
    make_device,
    plan,
    publish_model,
    running,
    selector_side,
    task,
    version_of,
)
from tests.support.signing import signed

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("art") / MODEL
    generate_artifacts(MODEL, out, optimizers=("sgd",))
    return out


@pytest.fixture
async def bus(artifact_dir: Path) -> AsyncIterator[MemoryPubSub]:
    """A started bus with the model published and round 1 selecting."""
    bus = MemoryPubSub()
    await bus.start()
    await publish_model(bus, version_of(artifact_dir), bundle_of(artifact_dir))
    await bus.publish(plan_topic(MODEL), encode(plan(1)), retain=True)
    yield bus
    await bus.stop()


def _update(uploads: list) -> ModelUpdate:  # type: ignore[type-arg]
    msg = decode_chunked([r.value for r in uploads])
    assert isinstance(msg, ModelUpdate)
    return msg


def test_tensor_adapter_round_trips_manifest_and_values() -> None:
    manifest = ParamManifest.of([("w", (2, 3)), ("b", (3,))])
    flat = np.arange(9, dtype=np.float32)
    tensors = to_tensors(manifest, flat)
    assert [s.name for s in tensors.manifest] == ["w", "b"]
    back_manifest, back = from_tensors(tensors)
    assert back_manifest == manifest
    np.testing.assert_array_equal(back, flat)


async def test_device_eligible_with_labels_checks_in_on_selecting_plan(
    bus: MemoryPubSub, tmp_path: Path
) -> None:
    async with selector_side(bus) as sel, running(make_device(bus, tmp_path, FakeClock())):
        await sel.wait_for(lambda s: len(s.checkins) >= 1)
    checkin = sel.checkins[0]
    assert (checkin.device_id, checkin.hospital_id, checkin.models) == ("d0", "h0", (MODEL,))
    assert checkin.charging and checkin.unmetered


async def test_device_on_task_uploads_chunked_update_with_token_headers(
    bus: MemoryPubSub, tmp_path: Path, artifact_dir: Path
) -> None:
    async with selector_side(bus) as sel, running(make_device(bus, tmp_path, FakeClock())):
        await sel.wait_for(lambda s: len(s.checkins) >= 1)
        with capture_logs() as logs:
            await sel.answer(task(1))
            await sel.wait_for(lambda s: len(s.evals) >= 1)
    assert len(sel.uploads) > 1, "a 4 KiB chunk bound must split the update"
    for record in sel.uploads:
        assert record.header("token") == bytes(range(41)).hex().encode()
        assert (record.header("model"), record.header("round")) == (MODEL.encode(), b"1")
        assert record.header("base_version") == b"0"
    update = _update(sel.uploads)
    manifest = Trainer(artifact_dir).manifest
    assert from_tensors(update.tensors)[0] == manifest
    assert (update.num_examples, update.round_id, update.token) == (60, 1, bytes(range(41)))
    assert np.linalg.norm(update.tensors.flat) > 0 and update.train_seconds > 0
    assert sel.evals[0].version == 0 and sel.evals[0].num_examples == 60
    assert {"task.received", "update.uploaded"} <= {e["event"] for e in logs}


async def test_device_never_uploads_twice_for_a_round_even_after_restart(
    bus: MemoryPubSub, tmp_path: Path
) -> None:
    clock = FakeClock()
    async with selector_side(bus) as sel:
        async with running(make_device(bus, tmp_path, clock)):
            await sel.wait_for(lambda s: len(s.checkins) >= 1)
            await sel.answer(task(1))
            await sel.wait_for(lambda s: len(s.evals) >= 1)
            first = len(sel.uploads)
            await sel.answer(task(1))  # a redelivered task
            await sel.drain(0.3)
        async with running(make_device(bus, tmp_path, clock)):  # same storage directory
            await sel.answer(task(1))
            await sel.drain(0.5)
    assert len(sel.uploads) == first
    assert len(sel.checkins) == 1, "round 1 is done: no check-in after the restart"
    entries = RoundLedger(tmp_path / "rounds.sqlite").entries()
    assert [(e.round_id, e.outcome) for e in entries] == [(1, "uploaded")]


async def test_device_decodes_plans_with_the_injected_decoder(
    bus: MemoryPubSub, tmp_path: Path
) -> None:
    # Prepare: a decoder that records what it was asked to decode.
    seen: list[bytes] = []

    def recording_decode(data: bytes) -> object:
        seen.append(data)
        return decode(data)

    device = make_device(bus, tmp_path, FakeClock(), decode_broadcast=recording_decode)
    # Execute
    async with selector_side(bus) as sel, running(device):
        await sel.wait_for(lambda s: len(s.checkins) >= 1)
    # Assert: the device checked in on the plan it decoded through the hook.
    assert seen == [encode(plan(1))]


async def test_device_respects_retry_after(bus: MemoryPubSub, tmp_path: Path) -> None:
    clock = FakeClock()
    device = make_device(bus, tmp_path, clock)
    async with selector_side(bus) as sel, running(device):
        await sel.wait_for(lambda s: len(s.checkins) >= 1)
        await sel.answer(RetryAfter("d0", "h0", MODEL, clock.now + 60_000, "paced"))
        await sel.drain(0.3)
        held_back = len(sel.checkins)
        clock.now += 60_001
        await sel.wait_for(lambda s: len(s.checkins) > held_back)
    assert held_back == 1


async def test_device_told_to_wait_for_a_round_checks_in_when_the_next_opens(
    bus: MemoryPubSub, tmp_path: Path
) -> None:
    # Round 1 closed early: a device sent to its deadline would miss round 2's window.
    clock = FakeClock()
    device = make_device(bus, tmp_path, clock)
    async with selector_side(bus) as sel, running(device):
        await sel.wait_for(lambda s: len(s.checkins) >= 1)
        await sel.answer(RetryAfter("d0", "h0", MODEL, clock.now + 60_000, "round_in_progress"))
        await sel.drain(0.3)
        await bus.publish(plan_topic(MODEL), encode(plan(2)), retain=True)
        await sel.wait_for(lambda s: len(s.checkins) >= 2)
    assert clock.now < sel.checkins[0].sent_at_ms + 60_000


async def test_device_ineligible_does_not_check_in(bus: MemoryPubSub, tmp_path: Path) -> None:
    async with (
        selector_side(bus) as sel,
        running(make_device(bus, tmp_path, FakeClock(), conditions=BAD)),
    ):
        await sel.drain(0.4)
    assert sel.checkins == []


async def test_device_without_labels_does_not_check_in(bus: MemoryPubSub, tmp_path: Path) -> None:
    device = make_device(bus, tmp_path, FakeClock())
    device.store.purge(device._now_dt().replace(year=2100))
    async with selector_side(bus) as sel, running(device):
        await sel.drain(0.4)
    assert sel.checkins == []


async def _failure_for(bus: MemoryPubSub, tmp_path: Path, the_task: object) -> TrainingFailure:
    async with selector_side(bus) as sel, running(make_device(bus, tmp_path, FakeClock())):
        with capture_logs() as logs:
            await sel.answer(the_task)  # type: ignore[arg-type]
            await sel.wait_for(lambda s: len(s.uploads) >= 1)
            await sel.drain(0.2)
    assert len(sel.uploads) == 1 and sel.evals == []
    failure = decode(sel.uploads[0].value)
    assert isinstance(failure, TrainingFailure)
    assert any(e["event"] == "training.failed" for e in logs)
    return failure


async def test_device_diverging_task_reports_failure_not_update(
    bus: MemoryPubSub, tmp_path: Path
) -> None:
    failure = await _failure_for(bus, tmp_path, task(1, lr=1e30))
    assert (failure.reason, failure.round_id) == ("diverged", 1)


async def test_device_task_for_unknown_model_reports_failure(
    bus: MemoryPubSub, tmp_path: Path
) -> None:
    failure = await _failure_for(bus, tmp_path, task(1, model="no_such_model"))
    assert (failure.reason, failure.model) == ("unknown_model", "no_such_model")


async def test_device_wrong_shape_weights_report_failure(
    tmp_path: Path, artifact_dir: Path
) -> None:
    bus = MemoryPubSub()
    await bus.start()
    good = version_of(artifact_dir)
    bad_tensors = Tensors((TensorSpec("w", (good.tensors.flat.size,)),), good.tensors.flat)
    bad = signed(type(good)(MODEL, 0, -1, -1, 0, (), (), "art-1", bad_tensors))
    await publish_model(bus, bad, bundle_of(artifact_dir))
    try:
        failure = await _failure_for(bus, tmp_path, task(1))
    finally:
        await bus.stop()
    assert failure.reason == "bad_weights"


async def test_device_with_dropout_one_uploads_nothing(bus: MemoryPubSub, tmp_path: Path) -> None:
    async with (
        selector_side(bus) as sel,
        running(make_device(bus, tmp_path, FakeClock(), dropout=1.0)),
    ):
        await sel.wait_for(lambda s: len(s.checkins) >= 1)
        await sel.answer(task(1))
        await sel.drain(0.5)
    assert sel.uploads == [] and sel.evals == []
    entries = RoundLedger(tmp_path / "rounds.sqlite").entries()
    assert [(e.round_id, e.outcome) for e in entries] == [(1, "dropped")]


async def test_device_task_without_model_fails_at_deadline(tmp_path: Path) -> None:
    bus = MemoryPubSub()
    await bus.start()
    try:  # nothing is published for the model and the deadline is now
        failure = await _failure_for(bus, tmp_path, task(1, deadline_ms=FakeClock().now))
    finally:
        await bus.stop()
    assert failure.reason == "model_unavailable"
