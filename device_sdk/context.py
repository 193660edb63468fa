"""A device's settings, its counters, and the context its parts share.

``Device`` (client.py) builds one ``DeviceContext`` and hands it to the parts it
composes, ``CheckIns`` (checkin.py) and ``RoundRunner`` (rounds.py), so no
part reaches back into the Device and none imports client.py.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from device_sdk.ledger import RoundLedger
from device_sdk.store import ExampleStore
from flbus.port import PubSubBus


@dataclass(frozen=True)
class DeviceConfig:
    """Identity, installed models, storage and simulation knobs of one device."""

    device_id: str
    hospital_id: str
    models: tuple[str, ...]
    storage_dir: Path
    dropout: float = 0.0  # probability of vanishing between admission and upload
    slowdown: float = 1.0  # >1 stretches training time (a slower phone)
    ort_threads: int | None = 1
    poll_interval_s: float = 0.25
    checkin_timeout_ms: int = 30_000  # check in again if the selector never answered
    max_chunk_bytes: int = 512 * 1024
    # Where artifact bundles are installed (None: storage_dir/artifacts). Devices
    # of one simulator process share one: a bundle is written once, not per device.
    artifact_dir: Path | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {self.dropout}")
        if self.slowdown < 1.0:
            raise ValueError(f"slowdown must be >= 1, got {self.slowdown}")


@dataclass(frozen=True)
class RoundOutcome:
    """How one round ended on this device."""

    model: str
    round_id: int
    outcome: str  # uploaded, failed, dropped, duplicate
    reason: str = ""
    train_seconds: float = 0.0
    num_examples: int = 0


@dataclass
class DeviceStats:
    """What a device did, for the simulator's report."""

    checkins: int = 0
    tasks: int = 0
    retries: int = 0
    uploads: int = 0
    failures: int = 0
    dropouts: int = 0
    train_seconds: float = 0.0
    bus_errors: int = 0
    # Plans, versions and bundles not adopted, by reason (device_sdk.trust).
    control_refused: Counter[str] = field(default_factory=Counter)
    outcomes: list[RoundOutcome] = field(default_factory=list)
    # (start_ms, end_ms) of every on-device training job, to tell training from waiting.
    training_spans: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class DeviceContext:
    """Who the device is and what its parts share: bus, storage, counters, clock, log."""

    config: DeviceConfig
    bus: PubSubBus
    store: ExampleStore
    ledger: RoundLedger
    stats: DeviceStats
    clock: Callable[[], int]  # wall-clock milliseconds: deadlines and timestamps
    seed: int
    log: Any  # structlog logger bound to device and hospital

    def now(self) -> datetime:
        """The device clock as a timezone-aware datetime (the store's time)."""
        return datetime.fromtimestamp(self.clock() / 1000, UTC)

    def round_rng(self, model: str, round_id: int) -> np.random.Generator:
        """The random stream of one round (dropout draw, batch order, noise): reproducible."""
        return np.random.default_rng((self.seed, zlib.crc32(model.encode()), round_id))
