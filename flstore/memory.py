"""The model store in process: the demo's registry and the tests' (a real store, not a mock)."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np

from flstore.errors import VersionExists, VersionNotFound
from flstore.port import ModelStore, VersionRecord

Key = tuple[str, int]


def _copied(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in arrays.items()}


class MemoryModelStore(ModelStore):
    """Versions in dictionaries; every array is copied in and out, like a file would be."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the coordinator writes from a worker thread
        self._records: dict[Key, VersionRecord] = {}
        self._weights: dict[Key, dict[str, np.ndarray]] = {}
        self._onnx: dict[Key, bytes] = {}
        self._server: dict[Key, dict[str, np.ndarray]] = {}

    def put(
        self, record: VersionRecord, weights: Mapping[str, np.ndarray], onnx_model: bytes = b""
    ) -> None:
        """Store a new version (copies the arrays)."""
        key = (record.model, record.version)
        copied = _copied(weights)
        with self._lock:
            if key in self._records:
                raise VersionExists(f"{record.model} v{record.version} already exists")
            self._weights[key] = copied
            if onnx_model:
                self._onnx[key] = bytes(onnx_model)
            self._records[key] = record

    def get(self, model: str, version: int) -> tuple[VersionRecord, dict[str, np.ndarray]]:
        """A stored version and a copy of its weights."""
        with self._lock:
            record = self._records.get((model, version))
            if record is None:
                raise VersionNotFound(f"no version {version} of model {model!r}")
            return record, _copied(self._weights[(model, version)])

    def versions(self, model: str) -> list[VersionRecord]:
        """Every stored version of ``model``, oldest first."""
        with self._lock:
            found = [r for (m, _), r in self._records.items() if m == model]
        return sorted(found, key=lambda r: r.version)

    def onnx_model(self, model: str, version: int) -> bytes:
        """The serialized ONNX model stored with a version."""
        with self._lock:
            found = self._onnx.get((model, version))
        if found is None:
            raise VersionNotFound(f"no ONNX model stored for {model} v{version}")
        return found

    def put_server_state(self, model: str, version: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Keep a copy of the optimizer state (replaces any earlier one)."""
        copied = _copied(arrays)
        with self._lock:
            self._server[(model, version)] = copied

    def server_state(self, model: str, version: int) -> dict[str, np.ndarray] | None:
        """A copy of the optimizer state kept with ``version``, or None."""
        with self._lock:
            found = self._server.get((model, version))
            return None if found is None else _copied(found)
