"""Examples as the zoo's models see them, and the batching rule devices and references share.

Loading the bundled demo data sets is the simulator's business
(``flsim.datasets``): the device SDK trains on what an app recorded, never on
a bundled table, so nothing here imports scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Dataset:
    """Flat float32 features (n, width) and int64 class labels (n,)."""

    X: NDArray[np.float32]
    y: NDArray[np.int64]

    def take(self, rows: NDArray[np.int64]) -> Dataset:
        """The examples at ``rows``, in that order (a copy)."""
        return Dataset(self.X[rows], self.y[rows])


def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[NDArray[np.int64]]:
    """One epoch of index batches: a permutation from ``rng`` cut into ``batch_size`` pieces."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = rng.permutation(n).astype(np.int64)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]
