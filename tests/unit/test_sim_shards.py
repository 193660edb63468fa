"""Sharding a population over processes: how many, who goes where, and what a device costs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from device_sdk.training import TrainConfig
from flbus.memory import MemoryPubSub
from flsim.errors import ShardCapacityError
from flsim.experiment import make_experiment
from flsim.population import Population
from flsim.shards import MAX_DEVICES_PER_SHARD, ShardedPopulation, shard_count, split
from flsim.synthetic import SyntheticTrainer
from modelzoo import generate_artifacts
from tests.support.signing import SIGNER

pytestmark = pytest.mark.unit


def test_shard_count_auto_uses_every_core_and_more_when_devices_need_it() -> None:
    assert shard_count(30, 0, cores=2) == 2
    assert shard_count(1, 0, cores=8) == 1  # never an empty shard
    assert shard_count(1_000, 0, cores=2) == -(-1_000 // MAX_DEVICES_PER_SHARD)


def test_shard_count_refuses_too_few_workers_naming_the_minimum() -> None:
    needed = -(-1_000 // MAX_DEVICES_PER_SHARD)
    with pytest.raises(ShardCapacityError, match=f"at least {needed} worker processes"):
        shard_count(1_000, needed - 1)
    assert shard_count(1_000, needed) == needed


def test_split_deals_every_device_to_exactly_one_shard_across_hospitals() -> None:
    partitions = make_experiment(
        ["digits_mlp"], hospitals=3, devices_per_hospital=4, alpha=0.5, seed=0
    ).partitions
    shards = split(partitions, 4)
    held = [d.device for s in shards for d in s["digits_mlp"].devices]
    assert sorted(held) == sorted(d.device for d in partitions["digits_mlp"].devices)
    assert all({d.hospital for d in s["digits_mlp"].devices} == {"h0", "h1", "h2"} for s in shards)


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_population_in_memory_storage_opens_no_descriptor_per_device(tmp_path: Path) -> None:
    # Prepare: 20 devices' split; the file storage as the reference.
    partitions = make_experiment(
        ["digits_mlp"], hospitals=2, devices_per_hospital=10, alpha=0.5, seed=0
    ).partitions
    bus = MemoryPubSub()
    before = _open_descriptors()
    on_files = Population.from_partition(partitions, lambda _: bus, tmp_path / "f",
                                         coordinator_key=SIGNER.trusted(),
                                         manage_buses=False)  # fmt: skip
    with_files = _open_descriptors() - before
    for device in on_files.devices:
        device.close()
    # Execute
    before = _open_descriptors()
    in_memory = Population.from_partition(partitions, lambda _: bus, tmp_path / "m",
                                          coordinator_key=SIGNER.trusted(),
                                          manage_buses=False, storage="memory")  # fmt: skip
    # Assert: sqlite files cost descriptors per device; in-memory stores none.
    assert with_files >= 2 * len(on_files.devices)
    assert _open_descriptors() - before == 0
    assert len(in_memory.devices) == 20


def test_synthetic_trainer_uploads_an_update_of_the_model_size_without_ort(
    tmp_path: Path,
) -> None:
    generate_artifacts("digits_mlp", tmp_path)
    trainer = SyntheticTrainer(tmp_path)
    size = trainer.manifest.total_size
    trainer.load_weights(np.zeros(size, np.float32), trainer.manifest)
    x, y = np.zeros((5, 64), np.float32), np.zeros(5, np.int64)
    result = trainer.train(x, y, TrainConfig(), np.random.default_rng(0))
    assert result.update.shape == (size,) and result.update.dtype == np.float32
    assert result.num_examples == 5 and 0 < result.update_norm < 1


def test_sharded_devices_draw_what_they_would_draw_in_one_process(tmp_path: Path) -> None:
    # Prepare: the whole population in one process, and shard 1 of 2 built as a worker does.
    partitions = make_experiment(
        ["digits_mlp"], hospitals=2, devices_per_hospital=3, alpha=0.5, seed=0
    ).partitions
    bus = MemoryPubSub()
    # The pin travels to the worker processes pickled (TrustedKeys pickles as raw keys).
    opts = {"seed": 7, "max_slowdown": 3.0, "coordinator_key": SIGNER.trusted()}
    whole = Population.from_partition(
        partitions, lambda _: bus, tmp_path / "w", manage_buses=False, storage="memory", **opts
    )
    sharded = ShardedPopulation.plan(partitions, "mqtt://x", tmp_path / "s", workers=2, **opts)
    plan = sharded.plans[1]
    # Execute
    shard = Population.from_partition(plan.partitions, lambda _: bus, tmp_path / "s",
                                      manage_buses=False, **plan.options)  # fmt: skip
    # Assert: same dropout/batch stream and same slowness per device id.
    alone = {d.config.device_id: d for d in whole.devices}
    assert shard.devices
    for device in shard.devices:
        twin = alone[device.config.device_id]
        assert device.config.slowdown == twin.config.slowdown
        assert (
            device.round_rng("digits_mlp", 3).random() == twin.round_rng("digits_mlp", 3).random()
        )
