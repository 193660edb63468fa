"""flctl coordinator scores versions on rows no device of flctl devices trains on."""

from __future__ import annotations

import numpy as np
import pytest

from flctl.main import build_parser
from flctl.roles.coordinator import config_from_args, held_out_sets
from flsim.experiment import hospital_ids, make_experiment

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
    held_out = held_out_sets(coordinator_args, config_from_args(coordinator_args))["breast_cancer"]

    devices = make_experiment(
        ("breast_cancer",),
        hospitals=len(hospital_ids(devices_args.hospitals)),
        devices_per_hospital=devices_args.devices_per_hospital,
        alpha=devices_args.alpha,
        seed=devices_args.seed,
    )
    split = devices.partitions["breast_cancer"]
    trained = {row for shard in split.devices for row in shard.train}
    assert trained.isdisjoint(split.test)
    np.testing.assert_array_equal(held_out.y, devices.test_set("breast_cancer").y)
    np.testing.assert_array_equal(held_out.X, devices.test_set("breast_cancer").X)


def test_hospitals_setting_is_a_count_or_ids() -> None:
    assert hospital_ids("3") == ("h0", "h1", "h2")
    assert hospital_ids("h0, icu-2") == ("h0", "icu-2")
    for bad in ("0", "h0,h0", ""):
        with pytest.raises(ValueError):
            hospital_ids(bad)
