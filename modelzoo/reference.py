"""NumPy reference of the zoo MLPs (digits_mlp, breast_cancer): the yardstick for ORT.

Same layout as ``graphs.build_mlp``: ``fc{i}.weight`` is [in, out], ReLU between
layers, logits out; mean softmax cross-entropy; plain SGD (w -= lr * g), the
same rule as ORT's SGD optimizer model. Pure functions over dicts of arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Params = Mapping[str, NDArray[np.float32]]
F32 = NDArray[np.float32]


@dataclass(frozen=True)
class ForwardCache:
    """Activations kept by ``forward`` for ``backward``: inputs of every layer."""

    layer_inputs: tuple[F32, ...]
    pre_activations: tuple[F32, ...]


def layer_count(params: Params) -> int:
    """Number of dense layers in ``params``."""
    return sum(1 for name in params if name.endswith(".weight"))


def forward(params: Params, x: F32) -> tuple[F32, ForwardCache]:
    """Logits of the MLP for ``x`` (n, in) and the cache for ``backward``."""
    inputs: list[F32] = []
    pres: list[F32] = []
    h = x.astype(np.float32, copy=False)
    layers = layer_count(params)
    for i in range(1, layers + 1):
        inputs.append(h)
        z = h @ params[f"fc{i}.weight"] + params[f"fc{i}.bias"]
        pres.append(z)
        h = np.maximum(z, 0.0) if i < layers else z
    return h, ForwardCache(tuple(inputs), tuple(pres))


def cross_entropy(logits: F32, y: NDArray[np.int64]) -> tuple[float, F32]:
    """Mean softmax cross-entropy and its gradient with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = logits.shape[0]
    loss = float(-log_probs[np.arange(n), y].mean())
    grad = np.exp(log_probs)
    grad[np.arange(n), y] -= 1.0
    return loss, (grad / n).astype(np.float32)


def backward(params: Params, cache: ForwardCache, dlogits: F32) -> dict[str, F32]:
    """Gradients of the loss with respect to every parameter."""
    grads: dict[str, F32] = {}
    delta = dlogits
    for i in range(layer_count(params), 0, -1):
        grads[f"fc{i}.weight"] = cache.layer_inputs[i - 1].T @ delta
        grads[f"fc{i}.bias"] = delta.sum(axis=0)
        if i > 1:
            delta = (delta @ params[f"fc{i}.weight"].T) * (cache.pre_activations[i - 2] > 0)
    return grads


def sgd_step(params: Params, grads: Mapping[str, F32], lr: float) -> dict[str, F32]:
    """New parameters after one plain SGD step."""
    return {
        name: (p - np.float32(lr) * grads[name]).astype(np.float32) for name, p in params.items()
    }


def train_step(
    params: Params, x: F32, y: NDArray[np.int64], lr: float
) -> tuple[dict[str, F32], float]:
    """One forward/backward/SGD step; returns new parameters and the batch loss."""
    logits, cache = forward(params, x)
    loss, dlogits = cross_entropy(logits, y)
    return sgd_step(params, backward(params, cache, dlogits), lr), loss


def train_epoch(
    params: Params, x: F32, y: NDArray[np.int64], batches: Sequence[NDArray[np.int64]], lr: float
) -> tuple[dict[str, F32], list[float]]:
    """SGD over the given index batches; returns new parameters and per-step losses."""
    current = dict(params)
    losses: list[float] = []
    for idx in batches:
        current, loss = train_step(current, x[idx], y[idx], lr)
        losses.append(loss)
    return current, losses


def accuracy(params: Params, x: F32, y: NDArray[np.int64]) -> float:
    """Share of examples whose arg-max logit is the label."""
    logits, _ = forward(params, x)
    return float((logits.argmax(axis=1) == y).mean())
