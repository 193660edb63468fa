"""Scans of flat model vectors in cache-sized blocks: no temporary of the vector's size.

The aggregator reads every update once to check it and once to fold it; a
full-size temporary (``np.isfinite(x)``, ``x.astype(np.float64)``) costs a
write and a read of the whole vector more. Blocks of ``BLOCK`` elements stay
in the CPU cache, so each scan costs one read of the vector.
"""

from __future__ import annotations

import numpy as np

from flcore.kernels import compiled, takes

BLOCK = 1 << 16  # 64 Ki elements: 256 KiB of float32, inside L2 on current CPUs


def squared_norm(x: np.ndarray) -> float:
    """Sum of squares of a flat vector: block dot products in its dtype, summed in float64.

    A NaN or infinite element makes the result non-finite, so a finite result
    proves every element finite. A non-finite result may also be an overflow of
    float32 squares (elements beyond ~1e19): :func:`exact_squared_norm` tells.
    Float32 vectors go to the compiled loop when numba is installed
    (:mod:`flcore.kernels`: float64 sums, so no such overflow).
    """
    kernels = compiled()
    if kernels is not None and takes(x):
        return float(kernels.squared_norm(x))
    total = 0.0
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is an answer here, not noise
        for start in range(0, x.shape[0], BLOCK):
            block = x[start : start + BLOCK]
            total += float(np.dot(block, block))
    return total


def exact_squared_norm(x: np.ndarray) -> float:
    """Sum of squares computed in float64 block by block (slower; no float32 overflow)."""
    scratch = np.empty(min(BLOCK, x.shape[0]), dtype=np.float64)
    total = 0.0
    for start in range(0, x.shape[0], BLOCK):
        block = scratch[: min(BLOCK, x.shape[0] - start)]
        np.copyto(block, x[start : start + BLOCK], casting="unsafe")
        total += float(np.dot(block, block))
    return total


def first_non_finite(x: np.ndarray) -> int | None:
    """Index of the first NaN or infinite element, or None if all are finite."""
    for start in range(0, x.shape[0], BLOCK):
        finite = np.isfinite(x[start : start + BLOCK])
        if not finite.all():
            return start + int(np.argmin(finite))
    return None
