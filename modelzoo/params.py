"""Parameters on the wire: one flat float32 vector plus a manifest of (name, shape).

The order of the manifest is the order of the vector. The zoo fixes it per model
(``ModelSpec.param_manifest()``, ``ArtifactInfo.manifest``). This module does not
depend on ``schemas/``; an adapter maps to ``schemas.Tensors``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from modelzoo.errors import ManifestError

FloatArray = NDArray[np.float32]


class ParamEntry(NamedTuple):
    """One named tensor of a manifest."""

    name: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """Number of scalars in this tensor."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class ParamManifest:
    """Ordered (name, shape) pairs describing a flat parameter vector."""

    entries: tuple[ParamEntry, ...]

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, Iterable[int]]]) -> ParamManifest:
        """Build a manifest from (name, shape) pairs, rejecting duplicate names."""
        entries = tuple(ParamEntry(name, tuple(int(d) for d in shape)) for name, shape in pairs)
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ManifestError(f"duplicate parameter names in manifest: {names}")
        return cls(entries)

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names in vector order."""
        return tuple(e.name for e in self.entries)

    @property
    def total_size(self) -> int:
        """Length of the flat vector."""
        return sum(e.size for e in self.entries)

    def describe(self) -> str:
        """Names and shapes in words, e.g. ``fc1.weight [64, 32], fc1.bias [32]``."""
        return ", ".join(f"{e.name} {list(e.shape)}" for e in self.entries)

    def to_list(self) -> list[list[object]]:
        """JSON-friendly form: [[name, [dims...]], ...]."""
        return [[e.name, list(e.shape)] for e in self.entries]

    @classmethod
    def from_list(cls, raw: Iterable[Sequence[Any]]) -> ParamManifest:
        """Inverse of ``to_list``; ValueError/TypeError on malformed input."""
        pairs: list[tuple[str, list[int]]] = []
        for item in raw:
            name, shape = item
            pairs.append((str(name), [int(d) for d in shape]))
        return cls.of(pairs)


def manifest_of(params: Mapping[str, NDArray[np.generic]]) -> ParamManifest:
    """Manifest of a dict of arrays, in the dict's order."""
    return ParamManifest.of((name, arr.shape) for name, arr in params.items())


def flatten(params: Mapping[str, NDArray[np.generic]], manifest: ParamManifest) -> FloatArray:
    """Concatenate ``params`` into one float32 vector in manifest order."""
    missing = [n for n in manifest.names if n not in params]
    extra = [n for n in params if n not in set(manifest.names)]
    if missing or extra:
        raise ManifestError(f"parameter names differ: missing {missing}, unexpected {extra}")
    parts = []
    for entry in manifest.entries:
        arr = np.asarray(params[entry.name])
        if arr.shape != entry.shape:
            raise ManifestError(f"{entry.name}: shape {arr.shape}, manifest says {entry.shape}")
        parts.append(arr.astype(np.float32, copy=False).ravel())
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(parts)


def unflatten(flat: NDArray[np.generic], manifest: ParamManifest) -> dict[str, FloatArray]:
    """Split a flat vector into named float32 arrays (copies) following ``manifest``."""
    vec = np.asarray(flat)
    if vec.ndim != 1:
        raise ManifestError(f"flat parameters must be 1-D, got shape {vec.shape}")
    if vec.shape[0] != manifest.total_size:
        raise ManifestError(f"flat length {vec.shape[0]}, manifest needs {manifest.total_size}")
    out: dict[str, FloatArray] = {}
    offset = 0
    for entry in manifest.entries:
        chunk = vec[offset : offset + entry.size]
        out[entry.name] = chunk.astype(np.float32, copy=True).reshape(entry.shape)
        offset += entry.size
    return out
