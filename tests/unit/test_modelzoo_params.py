"""Zoo registry, parameter manifests, flatten/unflatten and the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

from flsim.datasets import model_dataset
from modelzoo import (
    ManifestError,
    ParamManifest,
    UnknownModelError,
    flatten,
    get_spec,
    manifest_of,
    model_names,
    shuffled_batches,
    unflatten,
)
from modelzoo import reference as ref
from modelzoo.graphs import trainable_initializers

pytestmark = pytest.mark.unit


def _params() -> dict[str, np.ndarray]:
    return {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([7.0], np.float32)}


def test_flatten_unflatten_roundtrip_keeps_order_and_values() -> None:
    params = _params()
    manifest = manifest_of(params)
    flat = flatten(params, manifest)
    assert flat.dtype == np.float32
    assert flat.tolist() == [0, 1, 2, 3, 4, 5, 7]
    back = unflatten(flat, manifest)
    assert list(back) == ["a", "b"]
    np.testing.assert_array_equal(back["a"], params["a"])


def test_flatten_follows_manifest_not_dict_order() -> None:
    manifest = ParamManifest.of([("b", (1,)), ("a", (2, 3))])
    assert flatten(_params(), manifest).tolist() == [7, 0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("length", [6, 8])
def test_unflatten_wrong_length_raises(length: int) -> None:
    with pytest.raises(ManifestError, match="length"):
        unflatten(np.zeros(length, np.float32), manifest_of(_params()))


def test_flatten_wrong_shape_or_names_raises() -> None:
    manifest = ParamManifest.of([("a", (3, 2)), ("b", (1,))])
    with pytest.raises(ManifestError, match="shape"):
        flatten(_params(), manifest)
    with pytest.raises(ManifestError, match="missing"):
        flatten({"a": _params()["a"]}, manifest_of(_params()))


def test_manifest_json_roundtrip_and_duplicates_rejected() -> None:
    manifest = manifest_of(_params())
    assert ParamManifest.from_list(manifest.to_list()) == manifest
    with pytest.raises(ManifestError, match="duplicate"):
        ParamManifest.of([("a", (1,)), ("a", (2,))])


def test_registry_lists_the_zoo_models_with_shapes() -> None:
    assert set(model_names()) == {"digits_mlp", "digits_cnn", "mnist_cnn", "breast_cancer"}
    mlp = get_spec("digits_mlp")
    assert (mlp.feature_width, mlp.classes) == (64, 10)
    assert mlp.param_manifest().total_size == 64 * 32 + 32 + 32 * 10 + 10
    assert get_spec("digits_cnn").input_shape == (1, 8, 8)
    big = get_spec("mnist_cnn")
    assert (big.input_shape, big.classes, big.dataset) == ((1, 28, 28), 10, "mnist")
    assert big.param_manifest().total_size == 1_015_342  # "about a million": MB updates
    bc = get_spec("breast_cancer")
    assert (bc.feature_width, bc.classes) == (30, 2)


def test_registry_unknown_model_raises_typed_error() -> None:
    with pytest.raises(UnknownModelError, match="no_such_model"):
        get_spec("no_such_model")


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn", "mnist_cnn", "breast_cancer"])
def test_build_is_deterministic_per_seed(name: str) -> None:
    spec = get_spec(name)

    def weights(seed: int) -> np.ndarray:
        model = spec.build(seed)
        return np.concatenate([numpy_helper.to_array(i).ravel() for i in model.graph.initializer])

    np.testing.assert_array_equal(weights(3), weights(3))
    assert not np.allclose(weights(3), weights(4))
    assert trainable_initializers(spec.build(0)) == [
        (e.name, e.shape) for e in spec.param_manifest().entries
    ]


@pytest.mark.parametrize("name", ["digits_mlp", "breast_cancer"])
def test_datasets_are_bundled_and_scaled(name: str) -> None:
    data = model_dataset(get_spec(name))
    assert data.X.dtype == np.float32 and data.y.dtype == np.int64
    assert data.X.shape[1] == get_spec(name).feature_width
    if name == "digits_mlp":
        assert data.X.min() >= 0.0 and data.X.max() <= 1.0
    else:
        np.testing.assert_allclose(data.X.mean(axis=0), 0.0, atol=1e-4)


def test_shuffled_batches_cover_every_index_once() -> None:
    batches = shuffled_batches(10, 4, np.random.default_rng(0))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))


def test_reference_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(0)
    params = {
        "fc1.weight": rng.normal(size=(5, 4)),
        "fc1.bias": rng.normal(size=4),
        "fc2.weight": rng.normal(size=(4, 3)),
        "fc2.bias": rng.normal(size=3),
    }
    x, y = rng.normal(size=(6, 5)), rng.integers(0, 3, 6)

    def loss_of(p: dict[str, np.ndarray]) -> float:
        return ref.cross_entropy(ref.forward(p, x)[0], y)[0]

    logits, cache = ref.forward(params, x)
    grads = ref.backward(params, cache, ref.cross_entropy(logits, y)[1])
    eps = 1e-6
    for name, value in params.items():
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            bumped = {k: v.copy() for k, v in params.items()}
            bumped[name][idx] += eps
            numeric[idx] = (loss_of(bumped) - loss_of(params)) / eps
        np.testing.assert_allclose(grads[name], numeric, atol=1e-4, err_msg=name)


def test_reference_sgd_learns_digits() -> None:
    spec = get_spec("digits_mlp")
    data = model_dataset(spec)
    params = unflatten(
        flatten(
            {i.name: numpy_helper.to_array(i) for i in spec.build(0).graph.initializer},
            spec.param_manifest(),
        ),
        spec.param_manifest(),
    )
    before = ref.accuracy(params, data.X, data.y)
    rng = np.random.default_rng(0)
    for _ in range(3):
        params, _ = ref.train_epoch(params, data.X, data.y, shuffled_batches(1797, 32, rng), 0.1)
    assert before < 0.3 and ref.accuracy(params, data.X, data.y) > 0.85
