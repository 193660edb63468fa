"""Bundled sklearn datasets for the zoo (no downloads) and the shared batching rule.

The data sets load lazily (scikit-learn is imported on first use, and only the
``sim`` extra installs it); who holds which rows is the simulator's business
(``flsim.partition``, ``flsim.experiment``).
"""

from __future__ import annotations

import functools
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


def _frozen(x: np.ndarray) -> np.ndarray:
    x.setflags(write=False)  # cached and shared: nobody may change it in place
    return x


@functools.cache
def load_digits_dataset() -> Dataset:
    """sklearn load_digits: 1797 8x8 images, pixels scaled to [0, 1] (divided by 16)."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    return Dataset(
        _frozen((raw.data / 16.0).astype(np.float32)), _frozen(raw.target.astype(np.int64))
    )


@functools.cache
def load_breast_cancer_dataset() -> Dataset:
    """sklearn load_breast_cancer: 569 x 30 features, standardized; labels 0/1."""
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer()
    x = raw.data
    # Standardised with whole-table statistics: fine for a demo dataset; a
    # hospital would ship the scaler (mean, std) with the model version.
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return Dataset(_frozen(x.astype(np.float32)), _frozen(raw.target.astype(np.int64)))


def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[NDArray[np.int64]]:
    """One epoch of index batches: a permutation from ``rng`` cut into ``batch_size`` pieces."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = rng.permutation(n).astype(np.int64)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]
