"""An app embedding the device SDK: it records predictions, attaches late labels, trains.

    pip install '.[device]'    # in a clone of nightshift-fl
    python examples/sdk_app.py mqtt://127.0.0.1:1883 --seconds 60

The device checks in whenever a round of breast_cancer is selecting and the
phone is eligible (here: always on the charger and the hospital Wi-Fi); once
admitted it trains on its labelled examples and uploads one update per round.
For TLS, verified against the hospital's CA, use a URL like
mqtts://broker.hospital.example:8883?ca=/data/fl/hospital-ca.pem
The device adopts only plans and models signed by the coordinator whose public
key it pins (--coordinator-key, the coordinator.pub that flctl provision writes).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import datetime
from pathlib import Path

import numpy as np

from device_sdk.client import Device, DeviceConfig
from device_sdk.eligibility import DeviceConditions
from flbus.mqtt import MqttBus
from flcore.signing import TrustedKeys

MODEL = "breast_cancer"  # 30 standardised measurements per case; 0 malignant, 1 benign


class PhoneConditions:
    """Your platform's facts (battery, network, idle state); here a phone on its charger."""

    def conditions(self, now: datetime) -> DeviceConditions:
        """The device's state at ``now``."""
        return DeviceConditions(
            charging=True, unmetered_network=True, idle=True, battery_level=0.9, free_memory_mb=900
        )


async def main(
    url: str, device_id: str, hospital_id: str, storage: Path, seconds: float, key: Path
) -> None:
    """Record 20 labelled cases, then run the device until Ctrl-C or ``seconds`` passed."""
    bus = MqttBus(url, client_id=device_id)  # a stable id: the broker keeps its session
    device = Device(
        DeviceConfig(device_id, hospital_id, (MODEL,), storage),
        bus,
        coordinator_key=TrustedKeys.from_pem(key.read_bytes()),  # adopt only what it signed
        conditions=PhoneConditions(),
    )
    rng = np.random.default_rng(17)
    labelled = 0
    for case in range(20):
        features = rng.normal(size=30).astype(np.float32)  # what your model saw
        prediction = int(features[:5].sum() > 0)  # what it answered then
        device.record_prediction(f"case-{case}", features, prediction, model=MODEL)
        label = prediction if case % 4 else 1 - prediction  # the diagnosis, weeks later
        labelled += device.attach_label(f"case-{case}", label)
    print(f"{device_id}: {labelled} labelled cases of {MODEL}; following {url}", flush=True)

    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_event.set)
    if seconds > 0:
        loop.call_later(seconds, stop_event.set)
    await bus.start()
    try:
        await device.run(stop_event)  # checks in when eligible, trains, uploads once per round
    finally:
        await bus.stop()
        device.close()
    s = device.stats
    print(f"{device_id}: checked in {s.checkins} time(s), uploaded {s.uploads} update(s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="An app embedding the nightshift-fl device SDK.")
    parser.add_argument("url", nargs="?", default="mqtt://127.0.0.1:1883", help="MQTT broker")
    parser.add_argument("--device", default="h0-phone-17", help="this device's id")
    parser.add_argument("--hospital", default="h0", help="the hospital it belongs to")
    parser.add_argument("--storage", type=Path, default=Path(".fl/sdk-app"), help="local state")
    parser.add_argument("--seconds", type=float, default=0, help="stop after this (0: Ctrl-C)")
    parser.add_argument("--coordinator-key", type=Path, default=Path("coordinator.pub"),
                        help="the coordinator's public key (PEM)")  # fmt: skip
    args = parser.parse_args()
    place = (args.device, args.hospital, args.storage)
    asyncio.run(main(args.url, *place, args.seconds, args.coordinator_key))
