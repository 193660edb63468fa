"""One contract for every model store: memory and files."""

from pathlib import Path

import numpy as np
import pytest

from services.coordinator.errors import StoreError
from services.coordinator.store import FileModelStore, MemoryModelStore, ModelStore, VersionRecord

pytestmark = pytest.mark.unit


@pytest.fixture(params=["memory", "files"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ModelStore:
    return MemoryModelStore() if request.param == "memory" else FileModelStore(tmp_path)


def _record(version: int, parent: int = -1) -> VersionRecord:
    return VersionRecord("digits_mlp", version, parent, version, 1000 + version, {"accuracy": 0.5})


def test_store_round_trips_weights_and_lineage(store: ModelStore) -> None:
    w = {"fc1.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "fc1.bias": np.ones(2, "f4")}
    store.put(_record(0), w)
    store.put(_record(1, parent=0), {k: v + 1 for k, v in w.items()})
    record, weights = store.get("digits_mlp", 1)
    assert record.parent_version == 0 and record.metrics == {"accuracy": 0.5}
    np.testing.assert_array_equal(weights["fc1.weight"], w["fc1.weight"] + 1)
    assert [r.version for r in store.versions("digits_mlp")] == [0, 1]
    assert store.latest("digits_mlp") == record
    assert store.latest("other") is None


def test_store_versions_are_immutable(store: ModelStore) -> None:
    store.put(_record(0), {"w": np.zeros(1, "f4")})
    with pytest.raises(StoreError, match="already exists"):
        store.put(_record(0), {"w": np.ones(1, "f4")})
    np.testing.assert_array_equal(store.get("digits_mlp", 0)[1]["w"], np.zeros(1, "f4"))


def test_store_missing_version_names_it(store: ModelStore) -> None:
    with pytest.raises(StoreError, match="no version 7"):
        store.get("digits_mlp", 7)


def test_file_store_survives_reopen(tmp_path: Path) -> None:
    FileModelStore(tmp_path).put(_record(0), {"w": np.full(3, 2.0, "f4")})
    record, weights = FileModelStore(tmp_path).get("digits_mlp", 0)
    assert record.version == 0 and weights["w"].tolist() == [2.0, 2.0, 2.0]
    assert not list(tmp_path.rglob("*.tmp"))


def test_store_keeps_each_versions_onnx_model(store: ModelStore) -> None:
    store.put(_record(0), {"w": np.zeros(1, "f4")}, onnx_model=b"onnx-bytes-v0")
    store.put(_record(1, parent=0), {"w": np.ones(1, "f4")})
    assert store.onnx_model("digits_mlp", 0) == b"onnx-bytes-v0"
    with pytest.raises(StoreError, match="no ONNX model"):
        store.onnx_model("digits_mlp", 1)


def test_store_keeps_the_server_optimizer_state(store: ModelStore) -> None:
    assert store.server_state("digits_mlp", 3) is None
    store.put_server_state("digits_mlp", 3, {"step": np.asarray(3), "m": np.ones(4)})
    saved = store.server_state("digits_mlp", 3)
    assert saved is not None and int(saved["step"]) == 3
    np.testing.assert_array_equal(saved["m"], np.ones(4))
