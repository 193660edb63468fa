"""The model registry: every zoo model by name, with its shapes and the data set it names."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import onnx

from modelzoo import graphs
from modelzoo.errors import UnknownModelError
from modelzoo.params import ParamManifest


@dataclass(frozen=True)
class ModelSpec:
    """A zoo model: name, per-example input shape, classes, graph builder, dataset."""

    name: str
    input_shape: tuple[int, ...]
    classes: int
    builder: Callable[[int], onnx.ModelProto]
    has_reference: bool
    description: str
    dataset: str  # the bundled data set it trains on, as partition specs name it

    @property
    def feature_width(self) -> int:
        """Length of one flat feature vector (the store and the wire keep features flat)."""
        return math.prod(self.input_shape)

    def build(self, seed: int = 0) -> onnx.ModelProto:
        """The inference ONNX graph with deterministic initial weights from ``seed``."""
        return self.builder(seed)

    def param_manifest(self) -> ParamManifest:
        """Parameter names and shapes in the fixed order of the flat vector."""
        return ParamManifest.of(graphs.trainable_initializers(self.build(0)))


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="digits_mlp",
            input_shape=(64,),
            classes=10,
            builder=partial(graphs.build_mlp, "digits_mlp", (64, 32, 10)),
            has_reference=True,
            description="MLP 64-32-10 (ReLU) for sklearn digits scaled /16",
            dataset="digits",
        ),
        ModelSpec(
            name="digits_cnn",
            input_shape=(1, 8, 8),
            classes=10,
            builder=lambda seed: graphs.build_cnn("digits_cnn", (1, 8, 8), 8, 10, seed),
            has_reference=False,
            description="Conv3x3(8) -> ReLU -> MaxPool2 -> Gemm(128-10) for 8x8 digits",
            dataset="digits",
        ),
        ModelSpec(
            name="mnist_cnn",
            input_shape=(1, 28, 28),
            classes=10,
            builder=lambda seed: graphs.build_image_cnn(
                "mnist_cnn", (1, 28, 28), (32, 64), 108, 10, seed
            ),
            has_reference=False,
            description="Conv3x3(32) -> Conv3x3(64) -> MaxPool2 -> Gemm(9216-108) -> Gemm(108-10), "
            "ReLU, ~1.0M parameters, for 28x28 MNIST digits scaled /255",
            dataset="mnist",
        ),
        ModelSpec(
            name="breast_cancer",
            input_shape=(30,),
            classes=2,
            builder=partial(graphs.build_mlp, "breast_cancer", (30, 16, 2)),
            has_reference=True,
            description="MLP 30-16-2 (ReLU) for sklearn breast cancer, standardized",
            dataset="breast_cancer",
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    """The spec of a zoo model; UnknownModelError if there is none of that name."""
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(f"no zoo model named {name!r}; known: {sorted(MODELS)}") from None


def model_names() -> tuple[str, ...]:
    """Names of all zoo models."""
    return tuple(MODELS)
