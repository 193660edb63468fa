"""The model registry's storage: versions, weights, lineage and metrics.

One port (:class:`ModelStore`) with two implementations that pass one
contract suite: :class:`FileModelStore` (a directory per model, what a
deployment mounts as a volume) and :class:`MemoryModelStore` (in process).
"""

from __future__ import annotations

import abc
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from services.coordinator.errors import StoreError


@dataclass(frozen=True)
class VersionRecord:
    """One model version: where it came from, what it scored, and its weights."""

    model: str
    version: int
    parent_version: int
    round_id: int
    created_at_ms: int
    metrics: dict[str, float] = field(default_factory=dict)
    note: str = ""


class ModelStore(abc.ABC):
    """Where the coordinator keeps every model version it publishes."""

    @abc.abstractmethod
    def put(
        self, record: VersionRecord, weights: dict[str, np.ndarray], onnx_model: bytes = b""
    ) -> None:
        """Store a new version.

        Parameters
        ----------
        record:
            Lineage and metrics of the version.
        weights:
            Parameters by name.
        onnx_model:
            The serialized ONNX model with these weights (what a deployment
            serves); empty when there is none.

        Raises
        ------
        StoreError
            The version already exists (versions are immutable).
        """

    @abc.abstractmethod
    def get(self, model: str, version: int) -> tuple[VersionRecord, dict[str, np.ndarray]]:
        """A stored version and its weights; StoreError if there is none."""

    @abc.abstractmethod
    def versions(self, model: str) -> list[VersionRecord]:
        """Every stored version of ``model``, oldest first."""

    @abc.abstractmethod
    def onnx_model(self, model: str, version: int) -> bytes:
        """The serialized ONNX model of a version; StoreError if none was stored."""

    @abc.abstractmethod
    def put_server_state(self, model: str, version: int, arrays: dict[str, np.ndarray]) -> None:
        """Keep the server optimizer's state after making ``version`` (replaces any earlier)."""

    @abc.abstractmethod
    def server_state(self, model: str, version: int) -> dict[str, np.ndarray] | None:
        """The server optimizer's state saved with ``version``, or None."""

    def latest(self, model: str) -> VersionRecord | None:
        """The newest version of ``model``, or None."""
        found = self.versions(model)
        return found[-1] if found else None


class MemoryModelStore(ModelStore):
    """In-process store (demo and tests)."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, int], tuple[VersionRecord, dict[str, np.ndarray]]] = {}
        self._onnx: dict[tuple[str, int], bytes] = {}
        self._server: dict[tuple[str, int], dict[str, np.ndarray]] = {}

    def put(
        self, record: VersionRecord, weights: dict[str, np.ndarray], onnx_model: bytes = b""
    ) -> None:
        """Store a new version (copies the arrays)."""
        key = (record.model, record.version)
        if key in self._data:
            raise StoreError(f"{record.model} v{record.version} already exists")
        self._data[key] = (record, {k: np.array(v, copy=True) for k, v in weights.items()})
        if onnx_model:
            self._onnx[key] = bytes(onnx_model)

    def onnx_model(self, model: str, version: int) -> bytes:
        """The serialized ONNX model of a version."""
        try:
            return self._onnx[(model, version)]
        except KeyError:
            raise StoreError(f"no ONNX model stored for {model} v{version}") from None

    def put_server_state(self, model: str, version: int, arrays: dict[str, np.ndarray]) -> None:
        """Keep a copy of the optimizer state."""
        self._server[(model, version)] = {k: np.array(v, copy=True) for k, v in arrays.items()}

    def server_state(self, model: str, version: int) -> dict[str, np.ndarray] | None:
        """The optimizer state saved with ``version``, or None."""
        found = self._server.get((model, version))
        return None if found is None else {k: v.copy() for k, v in found.items()}

    def get(self, model: str, version: int) -> tuple[VersionRecord, dict[str, np.ndarray]]:
        """A stored version and its weights."""
        try:
            record, weights = self._data[(model, version)]
        except KeyError:
            raise StoreError(f"no version {version} of model {model!r}") from None
        return record, {k: v.copy() for k, v in weights.items()}

    def versions(self, model: str) -> list[VersionRecord]:
        """Every stored version of ``model``, oldest first."""
        return sorted(
            (r for (m, _), (r, _) in self._data.items() if m == model), key=lambda r: r.version
        )


class FileModelStore(ModelStore):
    """A directory per model: ``<root>/<model>/v<N>.npz``, ``v<N>.onnx`` and ``v<N>.json``.

    Files are written to a temporary name and renamed, so a crash never leaves
    a half-written version behind.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _paths(self, model: str, version: int) -> tuple[Path, Path]:
        base = self.root / model
        return base / f"v{version}.npz", base / f"v{version}.json"

    def put(
        self, record: VersionRecord, weights: dict[str, np.ndarray], onnx_model: bytes = b""
    ) -> None:
        """Store a new version atomically (the metadata file is written last)."""
        npz, meta = self._paths(record.model, record.version)
        if meta.exists():
            raise StoreError(f"{record.model} v{record.version} already exists in {self.root}")
        npz.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(npz, lambda f: np.savez(f, **weights))  # type: ignore[arg-type]
        if onnx_model:
            _atomic_write(npz.with_suffix(".onnx"), lambda f: f.write(onnx_model))
        _atomic_write(meta, lambda f: f.write(json.dumps(asdict(record), indent=2).encode()))

    def get(self, model: str, version: int) -> tuple[VersionRecord, dict[str, np.ndarray]]:
        """A stored version and its weights."""
        npz, meta = self._paths(model, version)
        if not meta.exists():
            raise StoreError(f"no version {version} of model {model!r} in {self.root}")
        record = VersionRecord(**json.loads(meta.read_text()))
        with np.load(npz) as data:
            weights = {k: data[k] for k in data.files}
        return record, weights

    def put_server_state(self, model: str, version: int, arrays: dict[str, np.ndarray]) -> None:
        """Write ``<root>/<model>/v<N>.server.npz`` atomically."""
        path = self._paths(model, version)[0].with_suffix(".server.npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]

    def server_state(self, model: str, version: int) -> dict[str, np.ndarray] | None:
        """The optimizer state saved with ``version``, or None."""
        path = self._paths(model, version)[0].with_suffix(".server.npz")
        if not path.is_file():
            return None
        with np.load(path) as data:
            return {k: data[k] for k in data.files}

    def onnx_model(self, model: str, version: int) -> bytes:
        """The serialized ONNX model of a version (``<root>/<model>/v<N>.onnx``)."""
        path = self._paths(model, version)[0].with_suffix(".onnx")
        if not path.is_file():
            raise StoreError(f"no ONNX model stored for {model} v{version} in {self.root}")
        return path.read_bytes()

    def versions(self, model: str) -> list[VersionRecord]:
        """Every stored version of ``model``, oldest first."""
        folder = self.root / model
        if not folder.is_dir():
            return []
        records = [VersionRecord(**json.loads(p.read_text())) for p in folder.glob("v*.json")]
        return sorted(records, key=lambda r: r.version)


def _atomic_write(path: Path, write: object) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)  # type: ignore[operator]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
