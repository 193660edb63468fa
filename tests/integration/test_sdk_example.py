"""examples/sdk_app.py (the README's example) as a user runs it, against a real Mosquitto.

The test plays the selector: it retains a breast_cancer model and a selecting
plan, answers the example's check-in with a task, and stops the app with
Ctrl-C (SIGINT) once its update and evaluation arrived.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from device_sdk.client import wall_ms
from flbus.mqtt import MqttBus
from modelzoo import generate_artifacts
from schemas import ModelUpdate, encode
from schemas.chunking import decode_chunked
from schemas.topics import plan_topic
from tests.support.device import (
    bundle_of,
    clear_model,
    plan,
    publish_model,
    selector_side,
    task,
    version_of,
)
from tests.support.signing import signed, write_public_key

pytestmark = pytest.mark.mqtt

ROOT = Path(__file__).resolve().parents[2]
MODEL = "breast_cancer"  # the example's model


async def test_sdk_example_checks_in_trains_and_uploads_over_mosquitto(
    mqtt_url: str, tmp_path: Path
) -> None:
    # Prepare: the model and a selecting plan retained, a device id no other run used.
    art = tmp_path / "art"
    generate_artifacts(MODEL, art, optimizers=("sgd",))
    device_id = f"app-{uuid.uuid4().hex[:10]}"
    bus = MqttBus(mqtt_url)
    await bus.start()
    chunks = await publish_model(bus, version_of(art, model=MODEL), bundle_of(art, model=MODEL))
    await bus.publish(plan_topic(MODEL), encode(signed(replace(plan(1), model=MODEL))), retain=True)
    try:
        async with selector_side(bus, device_id) as sel:
            # Execute: run the example; admit its check-in; Ctrl-C once it reported.
            app = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "examples/sdk_app.py"), mqtt_url,
                "--device", device_id, "--storage", str(tmp_path / "app"), "--seconds", "90",
                "--coordinator-key", str(write_public_key(tmp_path)),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
            try:
                await sel.wait_for(lambda s: len(s.checkins) >= 1, timeout=60)
                the_task = replace(task(1, model=MODEL, device=device_id),
                                   deadline_ms=wall_ms() + 60_000)  # fmt: skip
                await sel.answer(the_task, device_id)
                await sel.wait_for(lambda s: len(s.evals) >= 1, timeout=60)
                app.send_signal(signal.SIGINT)
                out, err = await asyncio.wait_for(app.communicate(), 30)
            finally:
                if app.returncode is None:
                    app.kill()
                    await app.wait()
    finally:
        await clear_model(bus, MODEL, chunks)
        await bus.stop()
    # Assert: what the user sees, and what the selector received.
    stdout = out.decode()
    assert app.returncode == 0, err.decode()[-2000:]
    assert f"{device_id}: 20 labelled cases of breast_cancer" in stdout
    assert f"{device_id}: checked in 1 time(s), uploaded 1 update(s)" in stdout
    update = decode_chunked([r.value for r in sel.uploads])
    assert isinstance(update, ModelUpdate)
    assert (update.device_id, update.model, update.num_examples) == (device_id, MODEL, 20)
