"""Manifest of a flat parameter vector: ordered (name, shape) pairs, and (un)flattening."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from flcore.errors import SizeMismatch

Manifest = Sequence[tuple[str, tuple[int, ...]]]


def manifest_size(manifest: Manifest) -> int:
    """Return the number of scalars a flat vector described by ``manifest`` holds."""
    return sum(math.prod(shape) for _, shape in manifest)


def flatten(params: Mapping[str, np.ndarray], manifest: Manifest) -> np.ndarray:
    """Concatenate named arrays in manifest order into one flat float32 vector."""
    parts = []
    for name, shape in manifest:
        array = np.asarray(params[name], dtype=np.float32)
        if array.shape != tuple(shape):
            raise SizeMismatch(f"{name}: shape {array.shape} != manifest {tuple(shape)}")
        parts.append(array.ravel())
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(parts)


def unflatten(flat: np.ndarray, manifest: Manifest) -> dict[str, np.ndarray]:
    """Split a flat vector into named arrays (views, no copy) in manifest order."""
    if flat.ndim != 1 or flat.size != manifest_size(manifest):
        raise SizeMismatch(
            f"flat vector of shape {flat.shape} != manifest size {manifest_size(manifest)}"
        )
    out: dict[str, np.ndarray] = {}
    offset = 0
    for name, shape in manifest:
        n = math.prod(shape)
        out[name] = flat[offset : offset + n].reshape(shape)
        offset += n
    return out


def layer_sizes(manifest: Manifest) -> tuple[tuple[str, int], ...]:
    """Return (name, number of scalars) per layer, e.g. for ``RoundFacts.layer_sizes``."""
    return tuple((name, math.prod(shape)) for name, shape in manifest)
