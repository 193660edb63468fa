"""flctl coordinator scores versions on rows no device of flctl devices trains on."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from flctl.main import build_parser
from flctl.roles.coordinator import PROCESS, config_from_args, held_out_sets
from flctl.roles.devices import population_settings
from flproc.settings import resolve
from flsim.experiment import hospital_ids, make_experiment
from services.coordinator.config import HOSPITALS

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("env", [{}, {"FL_SEED": "7", "FL_ALPHA": "0.3", "FL_HOSPITALS": "2"}])
def test_coordinator_test_rows_are_disjoint_from_the_devices_rows(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    parser = build_parser()  # reads FL_* now, as each role's process would
    coordinator_args = parser.parse_args(["coordinator", "--models", "breast_cancer"])
    devices_args = parser.parse_args(["devices", "--models", "breast_cancer"])
    config = config_from_args(coordinator_args)
    held_out = held_out_sets(resolve(coordinator_args, PROCESS), config)["breast_cancer"]

    population = population_settings(devices_args)
    devices = make_experiment(
        ("breast_cancer",),
        hospitals=len(population["hospitals"]),
        devices_per_hospital=population["devices_per_hospital"],
        alpha=population["alpha"],
        seed=population["seed"],
    )
    split = devices.partitions["breast_cancer"]
    trained = {row for shard in split.devices for row in shard.train}
    assert trained.isdisjoint(split.test)
    np.testing.assert_array_equal(held_out.y, devices.test_set("breast_cancer").y)
    np.testing.assert_array_equal(held_out.X, devices.test_set("breast_cancer").X)


@pytest.mark.parametrize("read", [HOSPITALS.read, hospital_ids])
def test_hospitals_setting_is_a_count_or_ids(read: Callable[[str], tuple[str, ...]]) -> None:
    assert read("3") == ("h0", "h1", "h2")
    assert read("h0, icu-2") == ("h0", "icu-2")
    for bad in ("0", "h0,h0", ""):
        with pytest.raises(ValueError):
            read(bad)
