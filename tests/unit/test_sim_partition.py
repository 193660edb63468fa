import json

import numpy as np
import pytest

from flsim.errors import PartitionSpecError, SimulationError
from flsim.experiment import shuffled_split
from flsim.partition import dirichlet_partition
from flsim.partition_spec import parse_partition
from modelzoo import Dataset

pytestmark = pytest.mark.unit

LABELS = np.repeat(np.arange(10), 50)  # 500 rows, 10 classes
SIZES = {"digits": len(LABELS)}


def _split(seed: int = 0, alpha: float = 0.5, **kw: object):
    return dirichlet_partition(LABELS, 3, 10, alpha, np.random.default_rng(seed), **kw)  # type: ignore[arg-type]


def test_dirichlet_split_covers_each_row_exactly_once() -> None:
    part = _split()
    rows = list(part.test) + [r for d in part.devices for r in d.train]
    assert sorted(rows) == list(range(len(LABELS)))
    assert len(part.devices) == 30
    assert all(d.train for d in part.devices)
    assert len({(d.hospital, d.device) for d in part.devices}) == 30
    assert {d.hospital for d in part.devices} == {"h0", "h1", "h2"}


def test_dirichlet_split_test_set_is_stratified() -> None:
    part = _split(test_fraction=0.2)
    counts = np.bincount(LABELS[list(part.test)], minlength=10)
    assert (counts == 10).all()


def test_dirichlet_split_is_seeded_deterministic() -> None:
    assert _split(seed=7) == _split(seed=7)
    assert _split(seed=7) != _split(seed=8)


def test_small_alpha_is_more_skewed_than_large_alpha() -> None:
    def mean_classes_per_device(alpha: float) -> float:
        part = _split(alpha=alpha)
        return float(np.mean([len(set(LABELS[list(d.train)])) for d in part.devices]))

    assert mean_classes_per_device(0.05) < mean_classes_per_device(100.0) - 3


def test_tiny_alpha_still_leaves_no_device_empty() -> None:
    part = _split(alpha=0.01)
    assert all(d.train for d in part.devices)


def test_dirichlet_bad_settings_raise() -> None:
    with pytest.raises(SimulationError):
        _split(alpha=0.0)
    with pytest.raises(SimulationError):
        _split(test_fraction=1.0)
    with pytest.raises(SimulationError):
        dirichlet_partition(LABELS[:5], 3, 10, 1.0, np.random.default_rng(0))


def test_spec_round_trips_through_json() -> None:
    part = _split()
    assert parse_partition(json.dumps(part.to_json_dict()), SIZES) == part


GOOD = {
    "dataset": "digits",
    "test": [0, 1],
    "devices": [
        {"hospital": "h0", "device": "d0", "train": [2, 3]},
        {"hospital": "h1", "device": "d0", "train": [4]},
    ],
}


def _with(path: str, value: object) -> dict:
    spec = json.loads(json.dumps(GOOD))
    target = spec
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is KeyError:
        del target[last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return spec


def test_good_spec_parses_and_same_device_name_in_two_hospitals_is_fine() -> None:
    part = parse_partition(GOOD, SIZES)
    assert part.test == (0, 1) and part.devices[1].train == (4,)


@pytest.mark.parametrize(
    "spec,field,words",
    [
        (_with("dataset", "mnist"), "dataset", "unknown dataset 'mnist'"),
        (_with("test.1", 500), "test[1]", "out of range"),
        (_with("test.1", -1), "test[1]", "out of range"),
        (_with("test.1", "7"), "test[1]", "integer"),
        (_with("test", []), "test", "at least one row"),
        (_with("devices.0.train.1", 1), "devices[0].train[1]", "also in test"),
        (_with("devices.1.train.0", 3), "devices[1].train[0]", "also in devices[0]"),
        (_with("devices.1.train", []), "devices[1].train", "no rows"),
        (_with("devices.1.train", [4, 4]), "devices[1].train[1]", "twice"),
        (_with("devices.1.hospital", "h0"), "devices[1].device", "appears twice"),
        (_with("devices.0.hospital", ""), "devices[0].hospital", "non-empty"),
        (_with("devices.0.device", KeyError), "devices[0].device", "missing"),
        (_with("devices.0.extra", 1), "devices[0].extra", "unknown field"),
        (_with("devices", []), "devices", "non-empty"),
        (_with("dataset", KeyError), "dataset", "missing"),
        (_with("tset", [1]), "tset", "unknown field"),
        ("[1, 2]", "<root>", "object"),
        ("{not json", "<root>", "JSON"),
    ],
)
def test_spec_errors_name_the_field(spec: object, field: str, words: str) -> None:
    with pytest.raises(PartitionSpecError) as err:
        parse_partition(spec, SIZES)  # type: ignore[arg-type]
    assert err.value.field == field
    assert words in str(err.value) and str(err.value).startswith(field)


def test_shuffled_split_holds_out_the_fraction_and_loses_no_row() -> None:
    # Prepare: a data set whose features name their row.
    data = Dataset(np.arange(100, dtype=np.float32).reshape(100, 1), np.arange(100) % 2)
    # Execute
    train, test = shuffled_split(data, 0.25, np.random.default_rng(0))
    # Assert: 75/25, every row once, labels still beside their features.
    assert (len(train.y), len(test.y)) == (75, 25)
    rows = np.concatenate([train.X[:, 0], test.X[:, 0]]).astype(int)
    assert sorted(rows) == list(range(100))
    np.testing.assert_array_equal(test.y, test.X[:, 0].astype(int) % 2)
    assert list(rows) != list(range(100)), "the rows are shuffled"
