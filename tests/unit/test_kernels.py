"""The compiled norm and fold (numba) agree with the numpy code they replace."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from flcore.aggregation import StreamingWeightedSum
from flcore.blockwise import exact_squared_norm, squared_norm
from flcore.kernels import compiled, use_compiled
from flcore.tokens import issue_token
from flcore.validation import RejectReason, RoundFacts, UpdateClaims, validate_update

pytestmark = pytest.mark.unit


@pytest.fixture(params=[True, False], ids=["compiled", "numpy"])
def kernels(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Run the test with the compiled loops on, then off."""
    previous = use_compiled(request.param)
    try:
        yield request.param
    finally:
        use_compiled(previous)


def test_the_compiled_loops_are_there() -> None:
    # numba comes with the services extra, which the dev install includes: without it
    # the aggregator silently runs at half the speed (python -m bench.aggregate).
    assert compiled() is not None


def _sum(updates: list[np.ndarray], weights: list[float], batch: int) -> StreamingWeightedSum:
    acc = StreamingWeightedSum(updates[0].size, batch)
    for x, w in zip(updates, weights, strict=True):
        acc.add(x, w)
    return acc


@pytest.mark.parametrize("count", [1, 2, 7, 8, 9, 17])
def test_compiled_and_numpy_folds_give_the_same_sums(count: int) -> None:
    rng = np.random.default_rng(count)
    size = 70_001  # not a multiple of any block or vector width
    updates = [rng.standard_normal(size, dtype=np.float32) for _ in range(count)]
    weights = [float(w) for w in rng.integers(0, 50, count)]  # a zero weight too, often
    weights[0] = 3.0
    previous = use_compiled(True)
    try:
        fast = _sum(updates, weights, batch=8).weighted_sum()
        use_compiled(False)
        slow = _sum(updates, weights, batch=8).weighted_sum()
    finally:
        use_compiled(previous)
    exact = sum(np.float64(w) * x.astype(np.float64) for x, w in zip(updates, weights, strict=True))
    np.testing.assert_allclose(fast, exact, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(slow, exact, rtol=1e-12, atol=1e-12)


def test_updates_the_compiled_fold_does_not_take_are_folded_by_numpy(kernels: bool) -> None:
    rng = np.random.default_rng(1)
    f32 = rng.standard_normal(1000, dtype=np.float32)
    f64 = rng.standard_normal(1000)
    strided = rng.standard_normal(2000, dtype=np.float32)[::2]
    acc = _sum([f32, f64, strided], [1.0, 2.0, 3.0], batch=8)
    want = f32.astype(np.float64) + 2 * f64 + 3 * strided.astype(np.float64)
    np.testing.assert_allclose(acc.weighted_sum(), want, rtol=1e-12)


def test_squared_norm_is_exact_enough_and_finds_non_finite_elements(kernels: bool) -> None:
    x = np.random.default_rng(2).standard_normal(300_001, dtype=np.float32)
    assert squared_norm(x) == pytest.approx(exact_squared_norm(x), rel=1e-6)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[123_456] = bad
        assert not np.isfinite(squared_norm(y)), bad


def test_validation_refuses_non_finite_and_oversized_updates_either_way(kernels: bool) -> None:
    facts = RoundFacts("m", "h", 7, 6, True, 50_000, norm_bound=10.0)
    secret = b"kernels-test"
    token = issue_token(
        model="m", round_id=7, base_version=6, device_id="d", hospital_id="h",
        expires_at_ms=60_000, secret=secret,
    )  # fmt: skip

    def check(delta: np.ndarray) -> RejectReason | None:
        claims = UpdateClaims("d", "h", "m", 7, 6, 5, token, delta)
        got = validate_update(claims, facts, set(), now_ms=1_000, secret=secret)
        return None if got is None else got.reason

    ok = np.full(50_000, 0.01, dtype=np.float32)  # norm ~2.24
    assert check(ok) is None
    nan = ok.copy()
    nan[49_999] = np.nan
    assert check(nan) == RejectReason.NON_FINITE
    assert check(np.full(50_000, 0.1, dtype=np.float32)) == RejectReason.NORM_EXCEEDED  # ~22.4
    # Finite elements whose float32 squares overflow: refused for their norm, not as NaN.
    assert check(np.full(50_000, 1e30, dtype=np.float32)) == RejectReason.NORM_EXCEEDED
