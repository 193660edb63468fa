"""Weighted averaging of flat model deltas: streaming, mergeable, O(model) memory.

A hospital aggregator folds device updates one at a time into a
``StreamingWeightedSum`` (weight = number of training examples) and publishes
its mean and total weight as a partial; the coordinator combines partials with
``weighted_mean_of_partials``, which gives exactly the FedAvg of all updates.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from flcore.errors import EmptyAggregate, InvalidParameter, SizeMismatch
from flcore.kernels import compiled, takes

# Deltas the aggregator folds at a time: at 8 the float64 accumulator's traffic
# is a quarter of the float32 updates' (python -m bench.aggregate measures it).
FOLD_BATCH = 8
# Elements per block of a batched fold: 8 x 32 Ki float64 rows stay in cache.
_WIDTH = 1 << 15


def _check_weight(weight: float) -> float:
    weight = float(weight)
    if not math.isfinite(weight) or weight < 0:
        raise InvalidParameter(f"weight must be finite and >= 0, got {weight}")
    return weight


class StreamingWeightedSum:
    """Running sum of ``weight * delta`` in float64; memory is one vector of the model size.

    With ``batch`` > 1 the sum folds deltas ``batch`` at a time: ``add`` checks
    a delta and keeps a reference to it (no copy) until ``batch`` are pending or
    the sum is read. The fold then walks the accumulator once per batch, block by
    cache-sized block, converting the pending blocks to float64 and adding their
    weighted sum with one matrix-vector product, so the float64 accumulator
    (twice the size of a float32 update) is read and written once per ``batch``
    updates instead of once per update. Float32 deltas (the wire's format) are
    folded by one compiled loop when numba is installed (:mod:`flcore.kernels`),
    the same arithmetic without the float64 copies. The caller must not modify a delta after
    ``add`` until the sum is read (``mean``, ``weighted_sum``, ``merge``) or
    ``flush`` ed; decoded messages are never modified, which is why the aggregator
    batches. Pending deltas are at most ``batch - 1`` live references.
    """

    __slots__ = ("_acc", "_batch", "_count", "_out", "_pending", "_rows", "_total_weight")

    def __init__(self, size: int, batch: int = 1) -> None:
        """Start an empty sum for flat vectors of ``size`` scalars, folded ``batch`` at a time."""
        if size < 0:
            raise InvalidParameter(f"size must be >= 0, got {size}")
        if batch < 1:
            raise InvalidParameter(f"batch must be >= 1, got {batch}")
        self._acc = np.zeros(size, dtype=np.float64)
        self._batch = batch
        width = max(1, min(size, _WIDTH))
        self._rows = np.empty((batch, width), dtype=np.float64)  # float64 blocks of the batch
        self._out = np.empty(width if batch > 1 else 0, dtype=np.float64)  # batch's weighted sum
        self._pending: list[tuple[np.ndarray, float]] = []
        self._total_weight = 0.0
        self._count = 0

    @classmethod
    def from_mean(cls, mean: np.ndarray, total_weight: float, count: int) -> StreamingWeightedSum:
        """Rebuild a sum from a published partial (its mean, total weight and update count)."""
        total_weight = _check_weight(total_weight)
        flat = np.asarray(mean)
        if flat.ndim != 1:
            raise SizeMismatch(f"mean must be 1-D, got shape {flat.shape}")
        out = cls(flat.size)
        np.multiply(flat, total_weight, out=out._acc, dtype=np.float64)
        out._total_weight = total_weight
        out._count = int(count)
        return out

    @property
    def size(self) -> int:
        """Number of scalars in each folded vector."""
        return int(self._acc.size)

    @property
    def total_weight(self) -> float:
        """Sum of the weights folded so far."""
        return self._total_weight

    @property
    def count(self) -> int:
        """Number of updates folded so far (including those inside merged sums)."""
        return self._count

    @property
    def nbytes(self) -> int:
        """Bytes held by the accumulator buffers (pending deltas are the caller's); constant."""
        return int(self._acc.nbytes + self._rows.nbytes + self._out.nbytes)

    def add(self, delta: np.ndarray, weight: float) -> None:
        """Fold one flat delta with its weight (usually its number of examples)."""
        weight = _check_weight(weight)
        if delta.ndim != 1 or delta.size != self._acc.size:
            raise SizeMismatch(f"delta of shape {delta.shape} != accumulator size {self._acc.size}")
        self._pending.append((delta, weight))
        self._total_weight += weight
        self._count += 1
        if len(self._pending) >= self._batch:
            self.flush()

    def flush(self) -> None:
        """Fold the pending deltas into the float64 accumulator now."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        n = len(pending)
        weights = np.array([w for _, w in pending], dtype=np.float64)
        kernels = compiled()
        if kernels is not None and all(takes(d) for d, _ in pending):
            if n == self._batch:  # one compiled pass over the accumulator
                kernels.fold(self._acc, weights, tuple(d for d, _ in pending))
            else:  # a partial batch, when the sum is read: one at a time, one compiled length
                for k, (delta, _) in enumerate(pending):
                    kernels.fold(self._acc, weights[k : k + 1], (delta,))
            return
        width = self._rows.shape[1]
        for start in range(0, self._acc.shape[0], width):
            stop = min(start + width, self._acc.shape[0])
            rows = self._rows[:n, : stop - start]
            for row, (delta, _) in zip(rows, pending, strict=True):
                np.copyto(row, delta[start:stop], casting="unsafe")
            if n == 1:
                out = np.multiply(rows[0], weights[0], out=rows[0])
            else:  # sum of weight * delta over the batch, in float64. Not np.dot: OpenBLAS
                # splits it over threads, and measured 10x slower on a busy 2-core machine.
                out = np.einsum("i,ij->j", weights, rows, out=self._out[: stop - start])
            target = self._acc[start:stop]
            np.add(target, out, out=target)

    def merge(self, other: StreamingWeightedSum) -> None:
        """Fold another sum (e.g. a partial) into this one, in place."""
        if other.size != self.size:
            raise SizeMismatch(f"cannot merge size {other.size} into size {self.size}")
        self.flush()
        other.flush()
        self._acc += other._acc
        self._total_weight += other._total_weight
        self._count += other._count

    def weighted_sum(self) -> np.ndarray:
        """Return a float64 copy of the raw weighted sum (for snapshots or secure aggregation)."""
        self.flush()
        return self._acc.copy()

    def mean(self) -> np.ndarray:
        """Return the weighted mean as float32; raises EmptyAggregate when total weight is 0."""
        if self._total_weight <= 0:
            raise EmptyAggregate(f"no weight folded ({self._count} updates)")
        self.flush()
        return (self._acc / self._total_weight).astype(np.float32)


def fedavg(results: Iterable[tuple[np.ndarray, float]]) -> np.ndarray:
    """Weighted mean of (flat delta, num_examples) pairs, as in McMahan et al. 2017."""
    total: StreamingWeightedSum | None = None
    for delta, weight in results:
        if total is None:
            total = StreamingWeightedSum(np.asarray(delta).size)
        total.add(np.asarray(delta), weight)
    if total is None:
        raise EmptyAggregate("fedavg of no results")
    return total.mean()


def weighted_mean_of_partials(
    partials: Iterable[tuple[np.ndarray, float]],
) -> tuple[np.ndarray, float]:
    """Combine (partial mean, partial total weight) pairs into (overall mean, total weight)."""
    total: StreamingWeightedSum | None = None
    for mean, weight in partials:
        if _check_weight(weight) == 0:
            continue  # an empty partial (hospital reported no updates) adds nothing
        part = StreamingWeightedSum.from_mean(np.asarray(mean), weight, 0)
        if total is None:
            total = part
        else:
            total.merge(part)
    if total is None:
        raise EmptyAggregate("no partials to combine")
    return total.mean(), total.total_weight
