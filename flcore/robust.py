"""Robust aggregation rules: coordinate-wise median and trimmed mean over a stack of updates.

FedAvg (``flcore.aggregation``) lets one update move the mean as far as its
norm bound allows, times its claimed weight. The rules here bound what a
minority can do: per coordinate, the median ignores everything but the middle
value(s); the trimmed mean drops the ``k = floor(trim_fraction * n)`` lowest
and highest values and averages the rest. Both are unweighted (one update,
one vote), so an inflated ``num_examples`` buys nothing.

Pure: arrays in, a float32 vector out. The caller rejects non-finite values
upstream (validation); a NaN here is a broken contract and raises.

Memory: a rule needs every update of the round at once, ``n x size`` float32
values (:func:`stack_bytes`); the hospital aggregator refuses a round whose
bound exceeds its setting.
"""

from __future__ import annotations

import math

import numpy as np

from flcore.errors import EmptyAggregate, InvalidParameter

FEDAVG = "fedavg"
MEDIAN = "median"
TRIMMED_MEAN = "trimmed_mean"
RULES: tuple[str, ...] = (FEDAVG, MEDIAN, TRIMMED_MEAN)
"""Aggregation rules a round plan may name; fedavg streams, the others keep every update."""

MAX_TRIM_FRACTION = 0.45
"""Trim at most this share from each side (a trimmed mean must keep some values)."""

BYTES_PER_VALUE = 4  # float32


def check_rule(rule: str, trim_fraction: float) -> None:
    """Raise InvalidParameter for an unknown rule or a trim fraction out of [0, 0.45]."""
    if rule not in RULES:
        raise InvalidParameter(f"aggregation must be one of {RULES}, got {rule!r}")
    if not (math.isfinite(trim_fraction) and 0.0 <= trim_fraction <= MAX_TRIM_FRACTION):
        raise InvalidParameter(
            f"trim_fraction must be in [0, {MAX_TRIM_FRACTION}], got {trim_fraction}"
        )


def is_robust(rule: str) -> bool:
    """Whether ``rule`` needs every update at once (anything but fedavg)."""
    return rule != FEDAVG


def stack_bytes(updates: int, size: int) -> int:
    """Bytes a robust rule holds for ``updates`` updates of ``size`` values (float32)."""
    return updates * size * BYTES_PER_VALUE


def trim_count(n: int, trim_fraction: float) -> int:
    """Values dropped from each side of ``n``: ``floor(trim_fraction * n)``, leaving >= 1."""
    k = math.floor(trim_fraction * n + 1e-9)  # 0.1 * 30 is 3, not 2.9999
    return max(0, min(k, (n - 1) // 2))


def _checked(stack: np.ndarray) -> np.ndarray:
    s = np.asarray(stack)
    if s.ndim != 2:
        raise InvalidParameter(f"stack must be 2-D (updates, values), got shape {s.shape}")
    if s.shape[0] == 0:
        raise EmptyAggregate("robust aggregate of no updates")
    if not np.isfinite(s).all():
        raise InvalidParameter("stack holds NaN or infinite values (reject them upstream)")
    return s


def coordinate_median(stack: np.ndarray) -> np.ndarray:
    """Per coordinate, the median of the rows (even count: mean of the two middle values)."""
    s = _checked(stack)
    out: np.ndarray = np.median(s, axis=0).astype(np.float32)
    return out


def trimmed_mean(stack: np.ndarray, trim_fraction: float) -> np.ndarray:
    """Per coordinate, the mean of the rows after dropping ``trim_count`` lowest and highest.

    Ties are dropped by position in sorted order, so the result does not depend
    on which of equal values goes; ``trim_fraction`` 0 is the plain mean.
    """
    check_rule(TRIMMED_MEAN, trim_fraction)
    s = _checked(stack)
    n = s.shape[0]
    k = trim_count(n, trim_fraction)
    kept = s if k == 0 else np.sort(s, axis=0)[k : n - k]
    return _mean(kept)


def _mean(rows: np.ndarray) -> np.ndarray:
    out: np.ndarray = rows.mean(axis=0, dtype=np.float64).astype(np.float32)
    return out


def robust_mean(rule: str, stack: np.ndarray, trim_fraction: float = 0.0) -> np.ndarray:
    """``rule`` over the rows of ``stack``; fedavg here is the unweighted mean."""
    check_rule(rule, trim_fraction)
    if rule == MEDIAN:
        return coordinate_median(stack)
    if rule == TRIMMED_MEAN:
        return trimmed_mean(stack, trim_fraction)
    return _mean(_checked(stack))


class UpdateStack:
    """Up to ``capacity`` flat updates of ``size`` values, preallocated as one float32 block.

    What a hospital keeps for a robust rule: ``stack_bytes(capacity, size)``
    bytes, allocated once, never more.
    """

    __slots__ = ("_rows", "_used")

    def __init__(self, capacity: int, size: int) -> None:
        """Reserve room for ``capacity`` updates of ``size`` values."""
        if capacity < 1 or size < 0:
            raise InvalidParameter(f"need capacity >= 1 and size >= 0, got {capacity}, {size}")
        self._rows = np.empty((capacity, size), np.float32)
        self._used = 0

    @property
    def count(self) -> int:
        """Updates held."""
        return self._used

    @property
    def nbytes(self) -> int:
        """Bytes reserved (the bound, whatever the count)."""
        return int(self._rows.nbytes)

    def add(self, delta: np.ndarray) -> None:
        """Keep one flat update; raises InvalidParameter when full or of the wrong size."""
        if self._used >= self._rows.shape[0]:
            raise InvalidParameter(f"stack full ({self._rows.shape[0]} updates)")
        size = self._rows.shape[1]
        if delta.ndim != 1 or delta.size != size:
            raise InvalidParameter(f"delta of shape {delta.shape}, expected ({size},)")
        self._rows[self._used] = delta
        self._used += 1

    def aggregate(self, rule: str, trim_fraction: float) -> np.ndarray:
        """``rule`` over the updates held (EmptyAggregate when none)."""
        return robust_mean(rule, self._rows[: self._used], trim_fraction)
