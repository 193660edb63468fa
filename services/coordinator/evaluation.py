"""Central evaluation of a model version on a held-out test set.

The coordinator scores every new version before announcing it, with plain
ONNX Runtime inference on the same graph the devices train.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Protocol

import numpy as np
import onnx
import onnxruntime as ort

from modelzoo import Dataset, get_spec
from modelzoo.graphs import INPUT_NAME, with_weights


@functools.cache
def _zoo_graph(model: str) -> onnx.ModelProto:
    return get_spec(model).build(0)  # only the architecture is used; weights are replaced


def onnx_model_bytes(model: str, weights: Mapping[str, np.ndarray]) -> bytes:
    """The zoo model ``model`` with ``weights``, serialized: what a version deploys as."""
    data: bytes = with_weights(_zoo_graph(model), weights).SerializeToString()
    return data


class Evaluator(Protocol):
    """Scores a model version."""

    def evaluate(self, model: str, onnx_model: bytes) -> dict[str, float]:
        """Metrics (at least ``accuracy`` and ``loss``) of the serialized ONNX model of a
        version of ``model``; empty if there is no test set."""
        ...


class OnnxEvaluator:
    """Evaluates zoo models on test sets given per model name."""

    def __init__(self, test_sets: Mapping[str, Dataset]) -> None:
        self._test_sets = dict(test_sets)

    def evaluate(self, model: str, onnx_model: bytes) -> dict[str, float]:
        """Accuracy, mean cross-entropy loss and example count on ``model``'s test set."""
        data = self._test_sets.get(model)
        if data is None or len(data.y) == 0:
            return {}
        spec = get_spec(model)
        # The very model the registry stores is the one scored.
        session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
        x = data.X.reshape(len(data.y), *spec.input_shape).astype(np.float32, copy=False)
        (logits,) = session.run(None, {INPUT_NAME: x})
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = float(-log_probs[np.arange(len(data.y)), data.y].mean())
        accuracy = float((logits.argmax(axis=1) == data.y).mean())
        return {"accuracy": accuracy, "loss": loss, "test_examples": float(len(data.y))}
