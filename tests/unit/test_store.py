"""The model store contract, run against the memory and the file store; the file store's own."""

from pathlib import Path

import numpy as np
import pytest

from flstore import FileModelStore, MemoryModelStore
from flstore.errors import StorageFailed
from tests.contracts.store import MODEL, StoreContract, record, weights

pytestmark = pytest.mark.unit


class TestMemoryModelStore(StoreContract):
    @pytest.fixture
    def store(self) -> MemoryModelStore:
        return MemoryModelStore()


class TestFileModelStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> FileModelStore:
        return FileModelStore(tmp_path / "registry")


def test_file_store_survives_reopen_without_leftovers(tmp_path: Path) -> None:
    FileModelStore(tmp_path).put(record(0), weights(2.0), onnx_model=b"onnx")
    FileModelStore(tmp_path).put_server_state(MODEL, 0, {"step": np.asarray(1)})

    reopened = FileModelStore(tmp_path)

    got, got_weights = reopened.get(MODEL, 0)
    assert got == record(0) and got_weights["fc1.bias"].tolist() == [2.0, 2.0]
    assert reopened.onnx_model(MODEL, 0) == b"onnx"
    assert not list(tmp_path.rglob("*.tmp"))


def test_file_store_names_the_path_it_cannot_write(tmp_path: Path) -> None:
    root = tmp_path / "not-a-directory"
    root.write_text("a file where the registry should be")

    with pytest.raises(StorageFailed, match="not-a-directory"):
        FileModelStore(root).put(record(0), weights(0.0))


def test_file_store_names_a_damaged_record(tmp_path: Path) -> None:
    store = FileModelStore(tmp_path)
    store.put(record(0), weights(0.0))
    (tmp_path / MODEL / "v0.json").write_text("{not json")

    with pytest.raises(StorageFailed, match=r"v0\.json"):
        store.versions(MODEL)


def test_file_store_version_without_its_record_does_not_exist(tmp_path: Path) -> None:
    store = FileModelStore(tmp_path)
    store.put(record(0), weights(0.0), onnx_model=b"onnx")
    (tmp_path / MODEL / "v0.json").unlink()  # as if the process died before the commit

    assert store.versions(MODEL) == []
    store.put(record(0, accuracy=0.5), weights(1.0))  # the version can be written again
    assert store.get(MODEL, 0)[0].metrics == {"accuracy": 0.5}
