"""Tensors on the wire: one flat float32 buffer plus a manifest of names and shapes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from schemas.errors import ValidationError


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """Name and shape of one tensor inside a flat buffer."""

    name: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError("tensors.names", f"must be a non-empty string, got {self.name!r}")
        shape = tuple(self.shape)
        for d in shape:
            if isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 0:
                raise ValidationError(
                    "tensors.shapes", f"{self.name}: dims must be ints >= 0, got {shape!r}"
                )
        object.__setattr__(self, "shape", tuple(int(d) for d in shape))

    @property
    def size(self) -> int:
        """Number of elements (product of the shape; 1 for a scalar)."""
        return math.prod(self.shape)


@dataclass(frozen=True, slots=True)
class Tensors:
    """Named float32 tensors stored back to back in one 1-D buffer.

    ``flat`` may be a read-only view into a decoded message; copy before mutating.
    """

    manifest: tuple[TensorSpec, ...]
    flat: np.ndarray

    def __post_init__(self) -> None:
        manifest = tuple(self.manifest)
        object.__setattr__(self, "manifest", manifest)
        flat = self.flat
        if not isinstance(flat, np.ndarray):
            raise ValidationError("tensors.data", f"must be a numpy array, got {type(flat)!r}")
        if flat.dtype != np.float32 or flat.ndim != 1:
            raise ValidationError(
                "tensors.data", f"must be 1-D float32, got {flat.dtype} with ndim {flat.ndim}"
            )
        names = [s.name for s in manifest]
        if len(set(names)) != len(names):
            raise ValidationError("tensors.names", f"names must be unique, got {names!r}")
        expected = sum(s.size for s in manifest)
        if flat.shape[0] != expected:
            raise ValidationError(
                "tensors.data",
                f"manifest describes {expected} floats but the buffer holds {flat.shape[0]}",
            )

    @classmethod
    def from_dict(cls, arrays: dict[str, np.ndarray]) -> Tensors:
        """Pack named arrays (any float dtype) into one flat float32 buffer (one copy)."""
        manifest = tuple(TensorSpec(k, tuple(np.shape(v))) for k, v in arrays.items())
        if not arrays:
            return cls(manifest, np.empty(0, dtype=np.float32))
        flat = np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in arrays.values()])
        return cls(manifest, flat)

    def to_dict(self) -> dict[str, np.ndarray]:
        """Return name -> array views into ``flat`` (no copy)."""
        out: dict[str, np.ndarray] = {}
        offset = 0
        for spec in self.manifest:
            n = spec.size
            out[spec.name] = self.flat[offset : offset + n].reshape(spec.shape)
            offset += n
        return out

    @property
    def nbytes(self) -> int:
        """Size of the flat buffer in bytes."""
        return int(self.flat.nbytes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tensors):
            return NotImplemented
        return self.manifest == other.manifest and np.array_equal(self.flat, other.flat)

    __hash__ = None  # type: ignore[assignment]
