"""The aggregator's two hot loops compiled with numba, when numba is installed.

Every update is read twice: once to check it (its L2 norm, which also proves
every element finite) and once to fold it into the float64 running sum,
``FOLD_BATCH`` updates at a time. In numpy the fold takes, per cache block, a
cast of each update to float64, a weighted sum and an add, and the norm one
BLAS dot per block; compiled, each is one loop that reads the update once.
That is what lets the aggregator's path approach numpy's own float32 in-place
add (``python -m bench.aggregate`` measures both).

numba comes with the ``services`` extra. Without it (a device-only install)
:func:`compiled` returns None and the numpy code runs. Both compute the fold
as ``acc + sum(w_k * x_k)`` per element in float64 and agree to rounding; the
compiled norm sums float32 squares in float64 (in any order), so it is the
more exact of the two. Compilation happens on first use, or ahead of it with
:func:`warm` (about a second), never at import, and nothing is written to disk.
The fold is compiled per batch length, so callers use two: a full batch and one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class Kernels:
    """The compiled loops. Arrays are C-contiguous; updates float32, ``acc`` float64."""

    fold: Callable[[np.ndarray, np.ndarray, tuple[np.ndarray, ...]], None]
    """``fold(acc, weights, updates)``: ``acc += sum(weights[k] * updates[k])``."""
    squared_norm: Callable[[np.ndarray], float]
    """Sum of squares in float64: NaN or infinite when an element is."""


_enabled = True
_kernels: Kernels | None = None
_loaded = False


def _compile() -> Kernels | None:
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(nogil=True, cache=False, boundscheck=False)
    def fold(acc: Any, weights: Any, updates: Any) -> None:
        for j in range(acc.shape[0]):
            s = 0.0
            for k in range(len(updates)):  # a constant per compiled tuple length: unrolled
                s += weights[k] * updates[k][j]
            acc[j] += s

    # reassoc lets the sum run in SIMD lanes; NaN and infinity keep their meaning
    # (no "nnan"/"ninf" flags), which is how a non-finite element is found.
    @numba.njit(nogil=True, cache=False, boundscheck=False, fastmath={"reassoc", "contract"})
    def squared_norm(x: Any) -> float:
        s = 0.0
        for j in range(x.shape[0]):
            v = np.float64(x[j])
            s += v * v
        return s

    return Kernels(fold, squared_norm)


def compiled() -> Kernels | None:
    """The compiled loops, or None (numba is not installed, or they are turned off)."""
    global _kernels, _loaded
    if not _enabled:
        return None
    if not _loaded:
        _kernels, _loaded = _compile(), True
    return _kernels


def warm(batch: int) -> bool:
    """Compile the loops now for batches of ``batch`` and of one; whether they are there.

    A role calls this off its event loop before its first update, so the first
    fold does not stall the loop for the compilation.
    """
    kernels = compiled()
    if kernels is None:
        return False
    acc, x = np.zeros(2), np.zeros(2, dtype=np.float32)
    for n in {1, batch}:
        kernels.fold(acc, np.zeros(n), (x,) * n)
    kernels.squared_norm(x)
    return True


def takes(x: np.ndarray) -> bool:
    """Whether the compiled loops take ``x``: float32 and contiguous, as updates arrive."""
    return x.dtype == np.float32 and bool(x.flags.c_contiguous)


def use_compiled(enabled: bool) -> bool:
    """Turn the compiled loops on or off (tests and the bench compare both); the old setting."""
    global _enabled
    previous, _enabled = _enabled, enabled
    return previous
