"""The data side of a demo run: who holds which rows, and the initial weights.

A run is reproducible from its inputs: a partition spec file (one data set,
used by every model of the run) or a seeded Dirichlet split per model, and
initial weights (or the zoo's seeded initialisation). Every role that splits
(``flctl demo``, ``flctl devices``, ``flctl coordinator``) calls
``make_experiment``, so they agree on the rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flsim.datasets import model_dataset
from flsim.errors import ExperimentError, PartitionSpecError
from flsim.partition import Partition, dirichlet_partition
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
    """Every model's split: the spec file's (all models must train on its data set),
    else a seeded Dirichlet split per model over ``hospitals`` x ``devices_per_hospital``."""
    data = {m: model_dataset(get_spec(m)) for m in models}
    if partition_file is not None:
        return Experiment(tuple(models), data, read_partition(partition_file, models, data))
    partitions = {
        model: dirichlet_partition(
            data[model].y,
            hospitals,
            devices_per_hospital,
            alpha,
            np.random.default_rng([seed, i]),
            TEST_FRACTION,
            get_spec(model).dataset,
        )
        for i, model in enumerate(models)
    }
    return Experiment(tuple(models), data, partitions)


def read_partition(
    path: Path, models: Sequence[str], data: Mapping[str, Dataset]
) -> dict[str, Partition]:
    """The spec file's split for each of ``models``; ExperimentError names the file and why.

    A spec splits one data set; every model of the run must train on it. A
    model on another data set is refused rather than quietly given a seeded
    split of its own: ask only for the models the spec fits.
    """
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ExperimentError(f"{path}: not valid JSON: {exc}") from None
    datasets = {m: get_spec(m).dataset for m in models}
    sizes = {datasets[m]: len(data[m].y) for m in models}
    named = raw.get("dataset") if isinstance(raw, dict) else None
    if isinstance(named, str) and named not in sizes:
        raise ExperimentError(
            f"{path}: a split of the {named!r} data set, which none of the models "
            f"{list(models)} trains on (they train on {sorted(sizes)})"
        )
    try:
        partition = parse_partition(raw, sizes)
    except PartitionSpecError as exc:
        raise ExperimentError(f"{path}: {exc}") from exc
    others = [m for m in models if datasets[m] != partition.dataset]
    if others:
        fits = [m for m in models if m not in others]
        raise ExperimentError(
            f"{path}: a split of the {partition.dataset!r} data set fits {', '.join(fits)} but "
            f"not {', '.join(f'{m} (trains on {datasets[m]!r})' for m in others)}; "
            f"ask only for the models it fits (--models {','.join(fits)})"
        )
    return dict.fromkeys(models, partition)
