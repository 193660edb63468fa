"""The local example store: restarts, late labels, retention, bad features."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from device_sdk.errors import FeatureError, StoreError, UnknownModelError
from device_sdk.store import ExampleStore

pytestmark = pytest.mark.unit

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
WIDTHS = {"bc": 3, "other": 2}


def _store(tmp_path: Path, retention: timedelta = timedelta(days=90)) -> ExampleStore:
    return ExampleStore(tmp_path / "examples.sqlite", WIDTHS, retention)


def test_store_labelled_examples_survive_restart(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        store.record_prediction("e1", [1.0, 2.0, 3.0], 1, T0, model="bc")
        store.attach_label("e1", 0, T0 + timedelta(days=30))
    with _store(tmp_path) as reopened:
        x, y = reopened.labelled("bc", T0 + timedelta(days=31))
    np.testing.assert_array_equal(x, [[1.0, 2.0, 3.0]])
    assert y.tolist() == [0]


def test_store_unlabelled_examples_never_train(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        store.record_prediction("e1", [1, 2, 3], 1, T0, model="bc")
        store.record_prediction("e2", [4, 5, 6], 0, T0, model="bc")
        store.attach_label("e2", 1, T0 + timedelta(hours=1))
        x, y = store.labelled("bc", T0 + timedelta(days=1))
        counts = store.counts("bc", T0 + timedelta(days=1))
    assert x.tolist() == [[4, 5, 6]] and y.tolist() == [1]
    assert (counts.labelled, counts.unlabelled) == (1, 1)


def test_store_label_applies_to_every_model_that_saw_the_example(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        store.record_prediction("e1", [1, 2, 3], 1, T0, model="bc")
        store.record_prediction("e1", [1, 2], 1, T0, model="other")
        assert store.attach_label("e1", 1, T0) == 2
        assert store.attach_label("never-seen", 1, T0) == 0
        assert store.labelled("other", T0)[1].tolist() == [1]


def test_store_examples_expire_after_retention(tmp_path: Path) -> None:
    with _store(tmp_path, retention=timedelta(days=90)) as store:
        store.record_prediction("old", [1, 1, 1], 0, T0, model="bc")
        store.record_prediction("new", [2, 2, 2], 0, T0 + timedelta(days=10), model="bc")
        store.attach_label("old", 1, T0 + timedelta(days=89))
        store.attach_label("new", 1, T0 + timedelta(days=89))
        day91 = T0 + timedelta(days=91)
        assert store.labelled("bc", day91)[1].tolist() == [1]
        assert store.labelled("bc", day91)[0].tolist() == [[2, 2, 2]]
        assert store.attach_label("old", 0, day91) == 0  # too late: already expired
        assert store.purge(day91) == 1
        assert store.counts("bc", T0).labelled == 1  # gone for good, even looking back


def test_store_rerecording_replaces_prediction_and_keeps_label(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        store.record_prediction("e1", [1, 1, 1], 0, T0, model="bc")
        store.attach_label("e1", 1, T0)
        store.record_prediction("e1", [9, 9, 9], 1, T0 + timedelta(days=1), model="bc")
        x, y = store.labelled("bc", T0 + timedelta(days=1))
    assert x.tolist() == [[9, 9, 9]] and y.tolist() == [1]


@pytest.mark.parametrize("features", [[1.0, 2.0], [1.0, 2.0, 3.0, 4.0], [1.0, float("nan"), 3.0]])
def test_store_bad_features_raise_feature_error(tmp_path: Path, features: list[float]) -> None:
    with _store(tmp_path) as store, pytest.raises(FeatureError):
        store.record_prediction("e1", features, 0, T0, model="bc")


def test_store_unknown_model_and_naive_time_are_typed_errors(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        with pytest.raises(UnknownModelError):
            store.record_prediction("e1", [1, 2, 3], 0, T0, model="nope")
        with pytest.raises(StoreError, match="naive"):
            store.record_prediction("e1", [1, 2, 3], 0, datetime(2025, 1, 1), model="bc")
