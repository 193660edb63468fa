"""The model store on disk: a directory per model, what a deployment mounts as a volume.

Layout: ``<root>/<model>/v<N>.npz`` (weights), ``v<N>.onnx`` (the served
model), ``v<N>.server.npz`` (server optimizer state) and ``v<N>.json`` (the
record). Each file is written to a temporary name and renamed, and the record
is written last: it is the commit, so a crash never leaves half a version.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import BinaryIO

import numpy as np

from flstore.errors import StorageFailed, VersionExists, VersionNotFound
from flstore.port import ModelStore, VersionRecord


@contextlib.contextmanager
def _translated(path: Path, doing: str) -> Iterator[None]:
    """The one place where file-system and decoding errors become ``StorageFailed``."""
    try:
        yield
    except (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile) as e:
        raise StorageFailed(f"cannot {doing} {path}: {type(e).__name__}: {e}") from e


class FileModelStore(ModelStore):
    """Versions as files under ``root`` (created on the first write)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, model: str, version: int, suffix: str) -> Path:
        return self.root / model / f"v{version}{suffix}"

    def put(
        self, record: VersionRecord, weights: Mapping[str, np.ndarray], onnx_model: bytes = b""
    ) -> None:
        """Store a new version atomically (the record is written last)."""
        meta = self._path(record.model, record.version, ".json")
        if meta.exists():
            raise VersionExists(f"{record.model} v{record.version} already exists in {self.root}")
        with _translated(meta.parent, "write a version to"):
            meta.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(meta.with_suffix(".npz"), lambda f: _save_arrays(f, weights))
            if onnx_model:
                _atomic_write(meta.with_suffix(".onnx"), lambda f: f.write(onnx_model))
            text = json.dumps(asdict(record), indent=2).encode()
            _atomic_write(meta, lambda f: f.write(text))

    def get(self, model: str, version: int) -> tuple[VersionRecord, dict[str, np.ndarray]]:
        """A stored version and its weights, read from disk."""
        meta = self._path(model, version, ".json")
        if not meta.is_file():
            raise VersionNotFound(f"no version {version} of model {model!r} in {self.root}")
        record = _read_record(meta)
        with _translated(meta.with_suffix(".npz"), "read weights from"):
            return record, _read_arrays(meta.with_suffix(".npz"))

    def versions(self, model: str) -> list[VersionRecord]:
        """Every stored version of ``model``, oldest first."""
        folder = self.root / model
        if not folder.is_dir():
            return []
        records = [_read_record(p) for p in folder.glob("v*.json")]
        return sorted(records, key=lambda r: r.version)

    def onnx_model(self, model: str, version: int) -> bytes:
        """The serialized ONNX model of a version (``<root>/<model>/v<N>.onnx``)."""
        path = self._path(model, version, ".onnx")
        if not path.is_file() or not self._path(model, version, ".json").is_file():
            raise VersionNotFound(f"no ONNX model stored for {model} v{version} in {self.root}")
        with _translated(path, "read"):
            return path.read_bytes()

    def put_server_state(self, model: str, version: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Write ``<root>/<model>/v<N>.server.npz`` atomically (replaces an earlier one)."""
        path = self._path(model, version, ".server.npz")
        with _translated(path, "write"):
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, lambda f: _save_arrays(f, arrays))

    def server_state(self, model: str, version: int) -> dict[str, np.ndarray] | None:
        """The optimizer state kept with ``version``, or None."""
        path = self._path(model, version, ".server.npz")
        if not path.is_file():
            return None
        with _translated(path, "read"):
            return _read_arrays(path)


def _read_record(path: Path) -> VersionRecord:
    with _translated(path, "read"):
        return VersionRecord(**json.loads(path.read_text()))


def _save_arrays(f: BinaryIO, arrays: Mapping[str, np.ndarray]) -> None:
    # numpy types **kwds as if a name could be its own allow_pickle keyword
    np.savez(f, **arrays)  # type: ignore[arg-type]


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
