"""ONNX graph builders for the zoo (onnx.helper only, no torch).

Every graph has one input ``input`` of shape [N, *input_shape] (float32) and one
output ``logits`` of shape [N, classes]. Trainable parameters are the float
initializers, in the order they are listed here; that order is the manifest.
Dense weights are stored [in, out] (``Gemm`` without transB) so the NumPy
reference computes ``x @ W + b`` with the same layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from modelzoo.ort_compat import MAX_IR_VERSION

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 17


def _he_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    scaled: np.ndarray = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    return scaled.astype(np.float32)


def _model(
    name: str,
    nodes: list[onnx.NodeProto],
    inits: list[tuple[str, np.ndarray]],
    input_shape: Sequence[int],
    classes: int,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(arr, n) for n, arr in inits],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="modelzoo"
    )
    model.ir_version = MAX_IR_VERSION
    onnx.checker.check_model(model)
    return model


def build_mlp(name: str, sizes: Sequence[int], seed: int) -> onnx.ModelProto:
    """MLP with ReLU between layers: sizes = (inputs, hidden..., classes)."""
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least input and output sizes, got {sizes}")
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[tuple[str, np.ndarray]] = []
    current = INPUT_NAME
    layers = len(sizes) - 1
    for i in range(layers):
        fan_in, fan_out = sizes[i], sizes[i + 1]
        w, b = f"fc{i + 1}.weight", f"fc{i + 1}.bias"
        inits += [
            (w, _he_normal(rng, (fan_in, fan_out), fan_in)),
            (b, np.zeros(fan_out, np.float32)),
        ]
        last = i == layers - 1
        out = OUTPUT_NAME if last else f"fc{i + 1}.out"
        nodes.append(helper.make_node("Gemm", [current, w, b], [out]))
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"relu{i + 1}.out"]))
            current = f"relu{i + 1}.out"
    return _model(name, nodes, inits, [sizes[0]], sizes[-1])


def build_cnn(
    name: str, image: tuple[int, int, int], channels: int, classes: int, seed: int
) -> onnx.ModelProto:
    """Conv 3x3 (same padding) -> ReLU -> MaxPool 2x2 -> Flatten -> Gemm."""
    c_in, height, width = image
    rng = np.random.default_rng(seed)
    pooled = channels * (height // 2) * (width // 2)
    inits = [
        ("conv1.weight", _he_normal(rng, (channels, c_in, 3, 3), c_in * 9)),
        ("conv1.bias", np.zeros(channels, np.float32)),
        ("fc1.weight", _he_normal(rng, (pooled, classes), pooled)),
        ("fc1.bias", np.zeros(classes, np.float32)),
    ]
    nodes = [
        helper.make_node(
            "Conv", [INPUT_NAME, "conv1.weight", "conv1.bias"], ["conv1.out"], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["conv1.out"], ["relu1.out"]),
        helper.make_node(
            "MaxPool", ["relu1.out"], ["pool1.out"], kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Flatten", ["pool1.out"], ["flat.out"], axis=1),
        helper.make_node("Gemm", ["flat.out", "fc1.weight", "fc1.bias"], [OUTPUT_NAME]),
    ]
    return _model(name, nodes, inits, list(image), classes)


def build_image_cnn(
    name: str,
    image: tuple[int, int, int],
    convs: tuple[int, int],
    hidden: int,
    classes: int,
    seed: int,
) -> onnx.ModelProto:
    """Two valid 3x3 convs (ReLU) -> MaxPool 2x2 -> Flatten -> Gemm (ReLU) -> Gemm.

    The classic MNIST CNN shape; with convs (32, 64) and ``hidden`` ~100 on 28x28
    images most of its million parameters sit in the first dense layer.
    """
    c_in, height, width = image
    c1, c2 = convs
    rng = np.random.default_rng(seed)
    flat = c2 * ((height - 4) // 2) * ((width - 4) // 2)
    inits = [
        ("conv1.weight", _he_normal(rng, (c1, c_in, 3, 3), c_in * 9)),
        ("conv1.bias", np.zeros(c1, np.float32)),
        ("conv2.weight", _he_normal(rng, (c2, c1, 3, 3), c1 * 9)),
        ("conv2.bias", np.zeros(c2, np.float32)),
        ("fc1.weight", _he_normal(rng, (flat, hidden), flat)),
        ("fc1.bias", np.zeros(hidden, np.float32)),
        ("fc2.weight", _he_normal(rng, (hidden, classes), hidden)),
        ("fc2.bias", np.zeros(classes, np.float32)),
    ]
    nodes = [
        helper.make_node("Conv", [INPUT_NAME, "conv1.weight", "conv1.bias"], ["conv1.out"]),
        helper.make_node("Relu", ["conv1.out"], ["relu1.out"]),
        helper.make_node("Conv", ["relu1.out", "conv2.weight", "conv2.bias"], ["conv2.out"]),
        helper.make_node("Relu", ["conv2.out"], ["relu2.out"]),
        helper.make_node(
            "MaxPool", ["relu2.out"], ["pool.out"], kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Flatten", ["pool.out"], ["flat.out"], axis=1),
        helper.make_node("Gemm", ["flat.out", "fc1.weight", "fc1.bias"], ["fc1.out"]),
        helper.make_node("Relu", ["fc1.out"], ["relu3.out"]),
        helper.make_node("Gemm", ["relu3.out", "fc2.weight", "fc2.bias"], [OUTPUT_NAME]),
    ]
    return _model(name, nodes, inits, list(image), classes)


def trainable_initializers(model: onnx.ModelProto) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of the float32 initializers in graph order: the model's parameters."""
    return [
        (init.name, tuple(int(d) for d in init.dims))
        for init in model.graph.initializer
        if init.data_type == TensorProto.FLOAT
    ]


def with_weights(model: onnx.ModelProto, weights: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` whose initializers hold ``weights`` (by name; others unchanged)."""
    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    for init in proto.graph.initializer:
        if init.name in weights:
            value = np.asarray(weights[init.name], dtype=np.float32)
            init.CopyFrom(numpy_helper.from_array(value.reshape(tuple(init.dims)), init.name))
    return proto
