"""The device SDK is what an app embeds: it imports with the ``device`` extra alone.

A subprocess makes the heavy extras unimportable (``sys.modules[name] = None``)
and imports every device_sdk module, the MQTT bus and the zoo (for artifacts).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NOT_IN_DEVICE_EXTRA = ("aiokafka", "sklearn", "matplotlib")

SCRIPT = """
import importlib, pkgutil, sys

for name in {blocked!r}:
    sys.modules[name] = None  # importing it now raises ImportError
for name in {blocked!r}:
    try:
        importlib.import_module(name)
    except ImportError:
        continue
    sys.exit(f"the block of {{name}} does not work")

import device_sdk.rounds
if "device_sdk.client" in sys.modules:
    sys.exit("device_sdk.rounds imports device_sdk.client")

import device_sdk
modules = sorted(m.name for m in pkgutil.iter_modules(device_sdk.__path__))
for name in modules:
    importlib.import_module("device_sdk." + name)
import flbus.mqtt, modelzoo, modelzoo.artifacts

above = sorted(n for n in sys.modules if n.split(".")[0] in ("flsim", "services", "flctl", "bench"))
if above:
    sys.exit(f"the SDK imports a layer above it: {{above}}")
print(" ".join(modules))
"""


def test_sdk_imports_without_kafka_sklearn_or_matplotlib() -> None:
    # Execute: a fresh interpreter on this tree, the heavy extras blocked.
    script = SCRIPT.format(blocked=NOT_IN_DEVICE_EXTRA)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Assert: it exited 0 having imported the modules an app embeds.
    assert done.returncode == 0, done.stderr[-2000:]
    imported = done.stdout.split()
    assert {"client", "rounds", "checkin", "trainer", "store"} <= set(imported)
