"""The contract every ModelStore keeps: run against the memory and the file store.

A subclass provides the ``store`` fixture (an empty store).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from flstore.errors import StoreError, VersionExists, VersionNotFound
from flstore.port import ModelStore, VersionRecord

MODEL = "digits_mlp"


def record(version: int, parent: int = -1, model: str = MODEL, **metrics: float) -> VersionRecord:
    """A version record with distinct fields, so a mix-up shows."""
    return VersionRecord(model, version, parent, version + 10, 1_000 + version, dict(metrics))


def weights(fill: float) -> dict[str, np.ndarray]:
    """Two parameters of different shapes and a 0-d one, all ``fill``."""
    return {
        "fc1.weight": np.full((2, 3), fill, np.float32),
        "fc1.bias": np.full(2, fill, np.float32),
        "scale": np.asarray(fill, np.float32),
    }


class StoreContract:
    """Behaviour the coordinator relies on."""

    def test_store_round_trips_record_weights_and_lineage(self, store: ModelStore) -> None:
        first = VersionRecord(MODEL, 0, -1, 0, 1_000, {"accuracy": 0.5}, note="initial")
        store.put(first, weights(0.0))
        store.put(record(1, parent=0, accuracy=0.75, loss=0.5), weights(1.5))

        got, got_weights = store.get(MODEL, 1)
        assert got == record(1, parent=0, accuracy=0.75, loss=0.5)
        assert store.get(MODEL, 0)[0] == first
        assert set(got_weights) == {"fc1.weight", "fc1.bias", "scale"}
        for name, array in weights(1.5).items():
            assert got_weights[name].dtype == np.float32 and got_weights[name].shape == array.shape
            np.testing.assert_array_equal(got_weights[name], array)

    def test_store_lists_versions_oldest_first_by_number(self, store: ModelStore) -> None:
        for version in (2, 0, 10, 1):  # 10 sorts after 2 as a number, not as text
            store.put(record(version), weights(version))

        assert [r.version for r in store.versions(MODEL)] == [0, 1, 2, 10]
        assert store.latest(MODEL) == record(10)

    def test_store_keeps_models_apart(self, store: ModelStore) -> None:
        store.put(record(0), weights(1.0))
        store.put(record(0, model="breast_cancer"), weights(2.0))
        store.put(record(1, model="breast_cancer"), weights(3.0))

        assert [r.version for r in store.versions(MODEL)] == [0]
        assert [r.version for r in store.versions("breast_cancer")] == [0, 1]
        assert float(store.get("breast_cancer", 0)[1]["scale"]) == 2.0

    def test_store_without_versions_answers_empty(self, store: ModelStore) -> None:
        assert store.versions(MODEL) == []
        assert store.latest(MODEL) is None
        assert store.server_state(MODEL, 0) is None

    def test_store_versions_are_immutable(self, store: ModelStore) -> None:
        store.put(record(0, accuracy=0.1), weights(0.0))

        with pytest.raises(VersionExists, match="already exists"):
            store.put(record(0, accuracy=0.9), weights(1.0), onnx_model=b"other")

        got, got_weights = store.get(MODEL, 0)
        assert got.metrics == {"accuracy": 0.1}
        np.testing.assert_array_equal(got_weights["fc1.bias"], [0.0, 0.0])

    def test_store_keeps_its_own_copy_of_the_arrays(self, store: ModelStore) -> None:
        given = weights(1.0)
        store.put(record(0), given)
        given["fc1.bias"][:] = 7.0  # the caller reuses its buffers
        store.get(MODEL, 0)[1]["fc1.bias"][:] = 8.0  # the caller changes what it read

        np.testing.assert_array_equal(store.get(MODEL, 0)[1]["fc1.bias"], [1.0, 1.0])

    def test_store_missing_version_names_it(self, store: ModelStore) -> None:
        store.put(record(0), weights(0.0))

        with pytest.raises(VersionNotFound, match="no version 7 of model 'digits_mlp'"):
            store.get(MODEL, 7)
        with pytest.raises(LookupError):
            store.get("breast_cancer", 0)

    def test_store_keeps_each_versions_onnx_model(self, store: ModelStore) -> None:
        store.put(record(0), weights(0.0), onnx_model=b"onnx-bytes-v0")
        store.put(record(1, parent=0), weights(1.0))

        assert store.onnx_model(MODEL, 0) == b"onnx-bytes-v0"
        with pytest.raises(VersionNotFound, match="no ONNX model stored for digits_mlp v1"):
            store.onnx_model(MODEL, 1)
        with pytest.raises(VersionNotFound):
            store.onnx_model(MODEL, 5)

    def test_store_keeps_the_latest_server_state_of_a_version(self, store: ModelStore) -> None:
        store.put_server_state(MODEL, 3, {"step": np.asarray(2), "m": np.zeros(4)})
        store.put_server_state(MODEL, 3, {"step": np.asarray(3), "m": np.ones(4)})

        saved = store.server_state(MODEL, 3)

        assert saved is not None and int(saved["step"]) == 3 and set(saved) == {"step", "m"}
        np.testing.assert_array_equal(saved["m"], np.ones(4))
        assert store.server_state(MODEL, 2) is None
        assert store.versions(MODEL) == []  # a state alone is no version

    def test_store_takes_versions_from_worker_threads(self, store: ModelStore) -> None:
        failures: list[BaseException] = []

        def put_model(model: str) -> None:
            try:
                for version in range(5):
                    store.put(record(version, model=model), weights(version))
            except StoreError as e:  # pragma: no cover - reported below
                failures.append(e)

        threads = [threading.Thread(target=put_model, args=(m,)) for m in ("a", "b", "c")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        assert failures == []
        assert {m: [r.version for r in store.versions(m)] for m in "abc"} == {
            m: [0, 1, 2, 3, 4] for m in "abc"
        }
