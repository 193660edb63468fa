"""The selector's side of the device protocol, played by hand in SDK tests (any PubSubBus)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from device_sdk.client import Device, DeviceConfig
from device_sdk.eligibility import DeviceConditions, FixedConditions
from device_sdk.trainer import Trainer
from device_sdk.wire import to_tensors
from flbus.port import PubSubBus, Record, Subscription
from flsim.datasets import model_dataset
from modelzoo import get_spec
from schemas import CheckIn, ModelVersion, RetryAfter, RoundPlan, Task, decode, encode
from schemas.artifacts import ArtifactBundle
from schemas.chunking import encode_chunked
from schemas.topics import (
    artifact_topic,
    checkin_topic,
    eval_topic,
    model_chunk_topic,
    model_manifest_topic,
    plan_topic,
    task_topic,
    upload_topic,
)
from tests.support.signing import KEYS, signed

MODEL = "digits_mlp"
GOOD = DeviceConditions(True, True, True, 0.9, 2048)
BAD = DeviceConditions(False, False, True, 0.2, 2048)


class FakeClock:
    """A millisecond clock the test moves by hand."""

    def __init__(self, start_ms: int = 1_800_000_000_000) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now


def plan(round_id: int = 1, base_version: int = 0, deadline_ms: int = 2**50) -> RoundPlan:
    """A selecting round plan for MODEL in hospital h0, signed by the test coordinator."""
    return signed(RoundPlan(
        model=MODEL, round_id=round_id, base_version=base_version, state="selecting",
        local_epochs=1, max_steps=0, batch_size=16, learning_rate=0.1, clip_norm=0.0,
        noise_multiplier=0.0, hospitals=("h0",), targets=(1,), admission_probability=1.0,
        over_selection=1.3, min_fraction=0.5, opened_at_ms=0, deadline_ms=deadline_ms, reason="",
    ))  # fmt: skip


def task(round_id: int = 1, *, model: str = MODEL, lr: float = 0.1, deadline_ms: int = 2**50,
         device: str = "d0") -> Task:  # fmt: skip
    """A task for device ``device`` of h0."""
    return Task(
        device_id=device, hospital_id="h0", model=model, round_id=round_id, base_version=0,
        local_epochs=1, max_steps=0, batch_size=16, learning_rate=lr, clip_norm=0.0,
        noise_multiplier=0.0, deadline_ms=deadline_ms, token=bytes(range(41)), issued_at_ms=0,
    )  # fmt: skip


def bundle_of(artifact_dir: Path, digest: str = "art-1", model: str = MODEL) -> ArtifactBundle:
    """Every file of an artifact directory as one bundle, signed by the test coordinator."""
    files = {p.name: p.read_bytes() for p in artifact_dir.iterdir() if p.is_file()}
    return signed(ArtifactBundle.pack(model, digest, files))


def version_of(
    artifact_dir: Path, version: int = 0, digest: str = "art-1", model: str = MODEL
) -> ModelVersion:
    """The checkpoint's initial weights as a ModelVersion, signed by the test coordinator."""
    trainer = Trainer(artifact_dir)
    return signed(ModelVersion(model, version, -1, -1, 0, (), (), digest,
                               to_tensors(trainer.manifest, trainer.weights())))  # fmt: skip


async def publish_model(
    bus: PubSubBus, version: ModelVersion, bundle: ArtifactBundle
) -> tuple[int, int]:
    """What the selector bridge does: retained chunks of the bundle and of the version.

    Returns how many chunks the (version, bundle) took, for a test that clears them.
    """
    model = version.model
    bundle_chunks = encode_chunked(bundle, f"{model}-{bundle.digest}", 16_384)
    for seq, data in enumerate(bundle_chunks):
        await bus.publish(artifact_topic(model, 0, "bundle", seq), data, retain=True)
    chunks = encode_chunked(version, f"{model}-v{version.version}", 8192)
    for seq in range(len(chunks) - 1, -1, -1):  # seq 0 (the manifest) last
        topic = model_manifest_topic(model) if seq == 0 else model_chunk_topic(model, seq)
        await bus.publish(topic, chunks[seq], retain=True)
    return len(chunks), len(bundle_chunks)


async def clear_model(bus: PubSubBus, model: str, chunks: tuple[int, int]) -> None:
    """Clear the retained plan, version and bundle chunks of ``model`` (a shared broker)."""
    versions, bundles = chunks
    await bus.publish(plan_topic(model), b"", retain=True)
    await bus.publish(model_manifest_topic(model), b"", retain=True)
    for seq in range(1, versions):
        await bus.publish(model_chunk_topic(model, seq), b"", retain=True)
    for seq in range(bundles):
        await bus.publish(artifact_topic(model, 0, "bundle", seq), b"", retain=True)


@dataclass
class SelectorSide:
    """Records everything device d0 of h0 sends; answers by hand."""

    bus: PubSubBus
    sub: Subscription
    checkins: list[CheckIn] = field(default_factory=list)
    uploads: list[Record] = field(default_factory=list)
    evals: list[Any] = field(default_factory=list)

    async def drain(self, seconds: float) -> None:
        """Collect what arrives within ``seconds``."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            record = await self.sub.get(left)
            if record is None:
                return
            if record.topic.endswith("/checkin"):
                self.checkins.append(decode(record.value))
            elif record.topic.endswith("/upload"):
                self.uploads.append(record)
            else:
                self.evals.append(decode(record.value))

    async def wait_for(self, what: Callable[[SelectorSide], bool], timeout: float = 20.0) -> None:
        """Drain until ``what(self)`` holds; fail after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not what(self):
            assert loop.time() < end, f"timed out: {len(self.checkins)} checkins, " \
                f"{len(self.uploads)} uploads, {len(self.evals)} evals"  # fmt: skip
            await self.drain(0.05)

    async def answer(self, msg: Task | RetryAfter, device: str = "d0") -> None:
        """Send a Task or RetryAfter to the device."""
        await self.bus.publish(task_topic("h0", device), encode(msg))


@contextlib.asynccontextmanager
async def selector_side(bus: PubSubBus, device: str = "d0") -> AsyncIterator[SelectorSide]:
    """Subscribe to the device's outgoing topics before it starts."""
    sub = await bus.subscribe(
        [checkin_topic("h0", device), upload_topic("h0", device), eval_topic("h0", device)]
    )
    try:
        yield SelectorSide(bus, sub)
    finally:
        await sub.close()


def make_device(
    bus: PubSubBus, root: Path, clock: Callable[[], int], device: str = "d0", **kwargs: Any
) -> Device:
    """Device ``device`` of h0 with 60 labelled digits, good conditions unless overridden.

    ``kwargs`` replace DeviceConfig fields, except ``conditions``, ``decode_broadcast`` and
    ``coordinator_key`` (default: the test coordinator's, tests.support.signing).
    """
    conditions = kwargs.pop("conditions", GOOD)
    decoder = kwargs.pop("decode_broadcast", decode)
    keys = kwargs.pop("coordinator_key", KEYS)
    config = DeviceConfig(device, "h0", (MODEL,), root, poll_interval_s=0.02, max_chunk_bytes=4096)
    config = replace(config, **kwargs)
    dev = Device(
        config,
        bus,
        coordinator_key=keys,
        conditions=FixedConditions(conditions),
        clock=clock,
        seed=1,
        decode_broadcast=decoder,
    )
    data = model_dataset(get_spec(MODEL))
    for i in range(60):
        dev.record_prediction(f"ex{i}", data.X[i], 0, model=MODEL)
        dev.attach_label(f"ex{i}", int(data.y[i]))
    return dev


@contextlib.asynccontextmanager
async def running(device: Device) -> AsyncIterator[Device]:
    """Run ``device`` in the background for the duration of the block."""
    stop = asyncio.Event()
    job = asyncio.create_task(device.run(stop))
    try:
        await asyncio.wait_for(device.subscribed.wait(), 10)
        yield device
    finally:
        stop.set()
        await asyncio.wait_for(job, 10)
        device.close()
