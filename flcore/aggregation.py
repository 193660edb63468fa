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

from flcore.blockwise import BLOCK
from flcore.errors import EmptyAggregate, InvalidParameter, SizeMismatch


def _check_weight(weight: float) -> float:
    weight = float(weight)
    if not math.isfinite(weight) or weight < 0:
        raise InvalidParameter(f"weight must be finite and >= 0, got {weight}")
    return weight


class StreamingWeightedSum:
    """Running sum of ``weight * delta`` in float64; memory is one vector of the model size."""

    __slots__ = ("_acc", "_count", "_scratch", "_total_weight")

    def __init__(self, size: int) -> None:
        """Start an empty sum for flat vectors of ``size`` scalars."""
        if size < 0:
            raise InvalidParameter(f"size must be >= 0, got {size}")
        self._acc = np.zeros(size, dtype=np.float64)
        self._scratch = np.empty(min(size, BLOCK), dtype=np.float64)
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
        """Bytes held by the accumulator buffers; constant for the life of the sum."""
        return int(self._acc.nbytes + self._scratch.nbytes)

    def add(self, delta: np.ndarray, weight: float) -> None:
        """Fold one flat delta with its weight (usually its number of examples)."""
        weight = _check_weight(weight)
        if delta.ndim != 1 or delta.size != self._acc.size:
            raise SizeMismatch(f"delta of shape {delta.shape} != accumulator size {self._acc.size}")
        # Block by block through a cache-sized scratch: nothing allocated, and each
        # block's product is added while it is still in cache.
        for start in range(0, self._acc.shape[0], BLOCK):
            part = self._scratch[: min(BLOCK, self._acc.shape[0] - start)]
            np.multiply(delta[start : start + BLOCK], weight, out=part, casting="unsafe")
            target = self._acc[start : start + BLOCK]
            np.add(target, part, out=target)
        self._total_weight += weight
        self._count += 1

    def merge(self, other: StreamingWeightedSum) -> None:
        """Fold another sum (e.g. a partial) into this one, in place."""
        if other.size != self.size:
            raise SizeMismatch(f"cannot merge size {other.size} into size {self.size}")
        self._acc += other._acc
        self._total_weight += other._total_weight
        self._count += other._count

    def weighted_sum(self) -> np.ndarray:
        """Return a float64 copy of the raw weighted sum (for snapshots or secure aggregation)."""
        return self._acc.copy()

    def mean(self) -> np.ndarray:
        """Return the weighted mean as float32; raises EmptyAggregate when total weight is 0."""
        if self._total_weight <= 0:
            raise EmptyAggregate(f"no weight folded ({self._count} updates)")
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
