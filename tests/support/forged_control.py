"""Forged control messages on the retained topics, and what a device must do with them.

One scenario per kind, run on the in-memory bus (tests/unit/test_sdk_trust.py)
and on a real Mosquitto (tests/integration/test_sdk_trust_mqtt.py). The
``connect(client_id)`` argument gives a started bus: the device's, or the
attacker's/coordinator's side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from device_sdk.client import Device
from flbus.port import PubSubBus
from modelzoo import generate_artifacts
from schemas import ModelVersion, encode
from schemas.topics import plan_topic
from tests.support.device import (
    MODEL,
    bundle_of,
    clear_model,
    make_device,
    plan,
    publish_model,
    running,
    version_of,
)
from tests.support.signing import FORGER

Connect = Callable[[str], Awaitable[PubSubBus]]
HUGE = 10**9


def generated_artifacts(factory: pytest.TempPathFactory) -> Path:
    """MODEL's ONNX Runtime training artifacts (SGD) in a fresh folder."""
    out = factory.mktemp("art") / MODEL
    generate_artifacts(MODEL, out, optimizers=("sgd",))
    return out


async def until(what: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait until ``what()`` holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not what():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.02)


def _counted(device: Device, reason: str) -> Callable[[], bool]:
    """True once the device refused one more message for ``reason`` than now."""
    before = device.stats.control_refused[reason]
    return lambda: device.stats.control_refused[reason] > before


async def forged_plans_are_ignored(connect: Connect, root: Path, clock: Callable[[], int]) -> None:
    """Unsigned, wrongly signed, tampered and replayed plans change nothing; a genuine one does."""
    attacker, device_bus = await connect("attacker"), await connect("d0")
    topic = plan_topic(MODEL)
    device = make_device(device_bus, root, clock)
    try:
        async with running(device):
            state = device.model_state(MODEL)
            assert state is not None
            await attacker.publish(topic, encode(plan(2)), retain=True)  # genuine
            await until(lambda: state.plan is not None and state.plan.round_id == 2)
            forgeries = {
                "unsigned": replace(plan(HUGE), signature=b""),
                "unknown_key": FORGER.sign(replace(plan(HUGE), signature=b"")),
                "bad_signature": replace(plan(2), round_id=HUGE),  # a genuine signature, moved
                "stale_version": plan(1),  # genuine, but older than the one adopted
            }
            for reason, forged in forgeries.items():
                counted = _counted(device, reason)
                await attacker.publish(topic, encode(forged), retain=True)
                await until(counted)
                assert state.plan is not None and state.plan.round_id == 2, reason
            await attacker.publish(topic, encode(plan(3)), retain=True)  # genuine and newer
            await until(lambda: state.plan is not None and state.plan.round_id == 3)
            assert dict(device.stats.control_refused) == {
                "unsigned": 1, "unknown_key": 1, "bad_signature": 1, "stale_version": 1,
            }  # fmt: skip
    finally:
        await attacker.publish(topic, b"", retain=True)  # leave a shared broker clean


def _zeroed(version: ModelVersion, number: int) -> ModelVersion:
    flat = np.zeros_like(version.tensors.flat)
    tensors = replace(version.tensors, flat=flat)
    return replace(version, version=number, tensors=tensors, signature=b"")


async def forged_versions_are_ignored(
    connect: Connect, root: Path, clock: Callable[[], int], art: Path
) -> None:
    """Forged model versions are never adopted nor served by ``predict``, across restarts."""
    service = await connect("attacker")
    genuine, bundle = version_of(art, version=3), bundle_of(art)
    x = np.random.default_rng(0).normal(size=(32, 64)).astype(np.float32)
    chunks = await publish_model(service, genuine, bundle)
    try:
        device = make_device(await connect("d0"), root / "d0", clock)
        async with running(device):
            state = device.model_state(MODEL)
            assert state is not None
            # The version can be adopted before its artifacts are installed: wait for both.
            await until(
                lambda: (
                    state.version is not None
                    and state.version.version == 3
                    and state.artifact_dir_for(state.version) is not None
                )
            )
            served = device.predict(MODEL, x)
            unsigned_bundle = replace(bundle_of(art, digest="forged"), signature=b"")
            forgeries = {
                "unsigned": (_zeroed(genuine, HUGE), bundle),
                "unknown_key": (FORGER.sign(_zeroed(genuine, HUGE)), bundle),
                "stale_version": (version_of(art, version=2), bundle),
            }
            for reason, (forged, with_bundle) in forgeries.items():
                counted = _counted(device, reason)
                chunks = await publish_model(service, forged, with_bundle)
                await until(counted)
                assert state.version is not None and state.version.version == 3, reason
                assert np.array_equal(device.predict(MODEL, x), served), reason
            counted = _counted(device, "unsigned")
            chunks = await publish_model(service, version_of(art, version=2), unsigned_bundle)
            await until(counted)
            assert not (root / "d0" / "artifacts" / MODEL / "forged").exists()
        # The app restarts: the replayed older version still retained stays refused.
        again = make_device(await connect("d0"), root / "d0", clock)
        async with running(again):
            await until(lambda: again.stats.control_refused["stale_version"] >= 1)
            fresh = again.model_state(MODEL)
            assert fresh is not None and fresh.version is None
            chunks = await publish_model(service, version_of(art, version=4), bundle)
            await until(lambda: fresh.version is not None and fresh.version.version == 4)
    finally:
        await clear_model(service, MODEL, chunks)
