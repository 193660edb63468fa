"""The data side of a demo run: who holds which rows, and the initial weights.

A run is reproducible from its inputs: a partition spec (or a seeded
Dirichlet split) per data set, and initial weights (or the zoo's seeded
initialisation).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flsim.errors import ExperimentError
from flsim.partition import DeviceShard, Partition, dirichlet_partition
from flsim.partition_spec import parse_partition
from modelzoo import Dataset, get_spec

TEST_FRACTION = 0.2  # of each class, held out for the coordinator's evaluation


@dataclass(frozen=True)
class Experiment:
    """Per model: its data set, its split and its held-out test rows."""

    models: tuple[str, ...]
    data: dict[str, Dataset]
    partitions: dict[str, Partition]

    def test_set(self, model: str) -> Dataset:
        """The held-out test rows of ``model``'s data set."""
        return self.data[model].take(np.asarray(self.partitions[model].test, np.int64))

    def hospitals(self) -> tuple[str, ...]:
        """Every hospital that holds a device in some split, sorted."""
        return tuple(sorted({d.hospital for p in self.partitions.values() for d in p.devices}))

    def devices(self) -> dict[str, str]:
        """Device id -> hospital id over every split."""
        return {d.device: d.hospital for p in self.partitions.values() for d in p.devices}

    def population(self) -> dict[str, int]:
        """Devices per hospital."""
        counts: dict[str, int] = {}
        for hospital in self.devices().values():
            counts[hospital] = counts.get(hospital, 0) + 1
        return counts


def shuffled_split(
    data: Dataset, test_fraction: float, rng: np.random.Generator
) -> tuple[Dataset, Dataset]:
    """Shuffle with ``rng`` and split into (train, test): one holder, no hospitals."""
    order = rng.permutation(len(data.y))
    cut = len(order) - round(len(order) * test_fraction)
    return data.take(order[:cut]), data.take(order[cut:])


def hospital_ids(raw: str) -> tuple[str, ...]:
    """``FL_HOSPITALS`` as every role reads it: a count ("3": h0, h1, h2) or ids ("h0,h1")."""
    raw = raw.strip()
    if raw.isdigit():
        if int(raw) < 1:
            raise ValueError("needs at least one hospital")
        return tuple(f"h{i}" for i in range(int(raw)))
    ids = tuple(x.strip() for x in raw.split(",") if x.strip())
    if not ids or len(set(ids)) != len(ids):
        raise ValueError(f"needs distinct hospital ids or a count, got {raw!r}")
    return ids


def make_experiment(
    models: Sequence[str],
    *,
    hospitals: int,
    devices_per_hospital: int,
    alpha: float,
    seed: int,
    partition_file: Path | None = None,
) -> Experiment:
    """Splits for every model: the spec file where its data set matches, else seeded Dirichlet."""
    spec_text = partition_file.read_text() if partition_file else None
    data = {m: get_spec(m).load_data() for m in models}
    partitions: dict[str, Partition] = {}
    for model in models:
        spec = get_spec(model)
        if spec_text is not None and json.loads(spec_text).get("dataset") == spec.dataset:
            partitions[model] = parse_partition(spec_text, {spec.dataset: len(data[model].y)})
    if spec_text is not None and not partitions:
        raise ExperimentError(
            f"{partition_file}: its dataset matches none of the models {list(models)}"
        )
    # Models without a spec get a seeded Dirichlet split over the same devices.
    layout = next(iter(partitions.values())).devices if partitions else None
    for i, model in enumerate(models):
        if model in partitions:
            continue
        spec = get_spec(model)
        rng = np.random.default_rng([seed, i])
        if layout is None:
            partitions[model] = dirichlet_partition(
                data[model].y,
                hospitals,
                devices_per_hospital,
                alpha,
                rng,
                TEST_FRACTION,
                spec.dataset,
            )
            continue
        flat = dirichlet_partition(
            data[model].y, 1, len(layout), alpha, rng, TEST_FRACTION, spec.dataset
        )
        partitions[model] = Partition(
            spec.dataset,
            flat.test,
            tuple(
                DeviceShard(d.hospital, d.device, s.train)
                for d, s in zip(layout, flat.devices, strict=True)
            ),
        )
    return Experiment(tuple(models), data, partitions)
