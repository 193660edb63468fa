import numpy as np
import pytest

from flcore.aggregation import StreamingWeightedSum, fedavg, weighted_mean_of_partials
from flcore.errors import EmptyAggregate, InvalidParameter, SizeMismatch
from flcore.manifest import flatten, layer_sizes, manifest_size, unflatten

pytestmark = pytest.mark.unit


def _updates(n: int, size: int, seed: int = 0) -> list[tuple[np.ndarray, float]]:
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(size=size).astype(np.float32), float(rng.integers(1, 100))) for _ in range(n)
    ]


def test_streaming_sum_equals_batch_fedavg() -> None:
    updates = _updates(20, 50)
    acc = StreamingWeightedSum(50)
    for delta, w in updates:
        acc.add(delta, w)
    stacked = np.stack([d for d, _ in updates]).astype(np.float64)
    weights = np.array([w for _, w in updates])
    expected = (weights[:, None] * stacked).sum(0) / weights.sum()
    np.testing.assert_allclose(acc.mean(), expected, rtol=1e-6)
    np.testing.assert_allclose(fedavg(updates), expected, rtol=1e-6)
    assert acc.count == 20 and acc.total_weight == weights.sum()
    assert acc.mean().dtype == np.float32


def test_streaming_sum_merge_is_associative_and_matches_single_sum() -> None:
    updates = _updates(9, 16, seed=1)
    parts = []
    for chunk in (updates[:2], updates[2:5], updates[5:]):
        s = StreamingWeightedSum(16)
        for d, w in chunk:
            s.add(d, w)
        parts.append(s)

    def copy(s: StreamingWeightedSum) -> StreamingWeightedSum:
        return StreamingWeightedSum.from_mean(s.mean(), s.total_weight, s.count)

    left = copy(parts[0])
    left.merge(copy(parts[1]))
    left.merge(copy(parts[2]))
    right_tail = copy(parts[1])
    right_tail.merge(copy(parts[2]))
    right = copy(parts[0])
    right.merge(right_tail)
    np.testing.assert_allclose(left.mean(), right.mean(), rtol=1e-6)
    np.testing.assert_allclose(left.mean(), fedavg(updates), rtol=1e-5, atol=1e-6)
    assert left.count == right.count == 9


def test_streaming_sum_memory_constant_across_many_updates() -> None:
    acc = StreamingWeightedSum(1000)
    before = acc.nbytes
    rng = np.random.default_rng(2)
    delta = rng.normal(size=1000).astype(np.float32)
    for _ in range(2000):
        acc.add(delta, 3.0)
    assert acc.nbytes == before == 2 * 1000 * 8
    np.testing.assert_allclose(acc.mean(), delta, rtol=1e-6)


def test_streaming_sum_rejects_wrong_size_and_bad_weight() -> None:
    acc = StreamingWeightedSum(4)
    with pytest.raises(SizeMismatch):
        acc.add(np.zeros(5, np.float32), 1.0)
    with pytest.raises(SizeMismatch):
        acc.add(np.zeros((2, 2), np.float32), 1.0)
    with pytest.raises(InvalidParameter):
        acc.add(np.zeros(4, np.float32), float("nan"))
    with pytest.raises(InvalidParameter):
        acc.add(np.zeros(4, np.float32), -1.0)
    with pytest.raises(SizeMismatch):
        acc.merge(StreamingWeightedSum(3))


def test_empty_sum_mean_raises() -> None:
    with pytest.raises(EmptyAggregate):
        StreamingWeightedSum(3).mean()
    with pytest.raises(EmptyAggregate):
        fedavg([])
    with pytest.raises(EmptyAggregate):
        weighted_mean_of_partials([])


def test_weighted_mean_of_partials_equals_fedavg_of_all_updates() -> None:
    updates = _updates(12, 8, seed=3)
    partials = []
    for chunk in (updates[:3], updates[3:4], updates[4:]):
        s = StreamingWeightedSum(8)
        for d, w in chunk:
            s.add(d, w)
        partials.append((s.mean(), s.total_weight))
    # An empty hospital partial (weight 0, garbage mean) must not poison the result.
    partials.append((np.full(8, np.nan, np.float32), 0.0))
    mean, total = weighted_mean_of_partials(partials)
    np.testing.assert_allclose(mean, fedavg(updates), rtol=1e-5)
    assert total == sum(w for _, w in updates)


@pytest.mark.parametrize("batch", [1, 8])
def test_float64_accumulator_keeps_precision_of_small_updates(batch: int) -> None:
    acc = StreamingWeightedSum(1, batch)
    acc.add(np.array([1e8], np.float32), 1.0)
    for _ in range(1000):
        acc.add(np.array([1.0], np.float32), 1.0)
    # float32 would lose every +1 against 1e8.
    assert acc.weighted_sum()[0] == 1e8 + 1000


@pytest.mark.parametrize("size", [1, 5, 40_000, 70_001])  # one block, and more than one
def test_batched_fold_equals_one_at_a_time_and_counts_pending_updates(size: int) -> None:
    updates = _updates(11, size, seed=4)
    one, batched = StreamingWeightedSum(size), StreamingWeightedSum(size, batch=4)
    for delta, w in updates:
        one.add(delta, w)
        batched.add(delta, w)
    # 11 = 2 full batches + 3 pending: every read includes the pending ones.
    assert batched.count == 11 and batched.total_weight == one.total_weight
    exact = sum(w * d.astype(np.float64) for d, w in updates)
    np.testing.assert_allclose(batched.mean(), exact / one.total_weight, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(batched.weighted_sum(), exact, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(one.weighted_sum(), exact, rtol=1e-12, atol=1e-9)
    other = StreamingWeightedSum(size, batch=4)
    other.add(updates[0][0], 2.0)  # pending only, folded by merge
    batched.merge(other)
    np.testing.assert_allclose(
        batched.mean(), (exact + 2 * updates[0][0]) / (one.total_weight + 2), rtol=1e-6
    )


def test_batch_must_be_positive() -> None:
    with pytest.raises(InvalidParameter):
        StreamingWeightedSum(4, batch=0)


def test_manifest_flatten_unflatten_round_trip() -> None:
    manifest = [("w", (2, 3)), ("b", (3,))]
    params = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)}
    flat = flatten(params, manifest)
    assert flat.shape == (manifest_size(manifest),) == (9,)
    back = unflatten(flat, manifest)
    np.testing.assert_array_equal(back["w"], params["w"])
    assert layer_sizes(manifest) == (("w", 6), ("b", 3))
    with pytest.raises(SizeMismatch):
        unflatten(flat[:-1], manifest)
    with pytest.raises(SizeMismatch):
        flatten({"w": np.zeros((3, 2)), "b": np.ones(3)}, manifest)
