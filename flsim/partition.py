"""Who holds which rows: a seeded Dirichlet non-IID split, and partition spec loading.

Spec format (JSON)::

    {"dataset": "digits",
     "test": [row indices],
     "devices": [{"hospital": "h0", "device": "h0-d0", "train": [row indices]}, ...]}

Rows index the named data set. Every (hospital, device) pair is unique, every
device has at least one row, and no row is in two places (test or devices).
``flsim.partition_spec.parse_partition`` validates a spec given as JSON text or a dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from flsim.errors import SimulationError


@dataclass(frozen=True, slots=True)
class DeviceShard:
    """The training rows one device of one hospital holds."""

    hospital: str
    device: str
    train: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Partition:
    """A whole split: the data set, its held-out test rows and every device's rows."""

    dataset: str
    test: tuple[int, ...]
    devices: tuple[DeviceShard, ...]

    def to_json_dict(self) -> dict[str, Any]:
        """Return the spec as a JSON-ready dict (``parse_partition`` reads it back)."""
        return {
            "dataset": self.dataset,
            "test": list(self.test),
            "devices": [
                {"hospital": d.hospital, "device": d.device, "train": list(d.train)}
                for d in self.devices
            ],
        }


def dirichlet_partition(
    labels: np.ndarray,
    hospitals: int,
    devices_per_hospital: int,
    alpha: float,
    rng: np.random.Generator,
    test_fraction: float = 0.2,
    dataset: str = "digits",
) -> Partition:
    """Split rows over hospitals x devices with per-class Dirichlet(alpha) shares; seeded by rng.

    A stratified ``test_fraction`` of each class is held out first. Smaller alpha
    gives more skewed label mixes. Devices left empty take one row from the
    largest device, so every device can train.
    """
    if hospitals <= 0 or devices_per_hospital <= 0:
        raise SimulationError("hospitals and devices_per_hospital must be > 0")
    if not alpha > 0:
        raise SimulationError(f"alpha must be > 0, got {alpha}")
    if not 0 <= test_fraction < 1:
        raise SimulationError(f"test_fraction must be in [0, 1), got {test_fraction}")
    n_dev = hospitals * devices_per_hospital
    test: list[int] = []
    shards: list[list[int]] = [[] for _ in range(n_dev)]
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        n_test = round(len(rows) * test_fraction)
        test.extend(int(r) for r in rows[:n_test])
        train = rows[n_test:]
        shares = rng.dirichlet(np.full(n_dev, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(train)).astype(int)
        for shard, part in zip(shards, np.split(train, cuts), strict=True):
            shard.extend(int(r) for r in part)
    if sum(len(s) for s in shards) < n_dev:
        raise SimulationError(
            f"{sum(len(s) for s in shards)} training rows cannot fill {n_dev} devices"
        )
    for shard in shards:
        if not shard:
            shard.append(max(shards, key=len).pop())
    devices = tuple(
        DeviceShard(f"h{h}", f"h{h}-d{d}", tuple(sorted(shards[h * devices_per_hospital + d])))
        for h in range(hospitals)
        for d in range(devices_per_hospital)
    )
    return Partition(dataset, tuple(sorted(test)), devices)
