"""Master aggregation of hospital partials."""

from __future__ import annotations

import numpy as np
import pytest

from flcore.errors import EmptyAggregate, SizeMismatch
from flcore.master import PartialSum, combine
from flcore.server_opt import ServerOptState, make_server_optimizer

pytestmark = pytest.mark.unit


def _partial(hospital: str, delta: list[float], n: int, updates: int = 2) -> PartialSum:
    return PartialSum(hospital, np.asarray(delta, np.float64) * n, n, updates)


def test_master_is_fedavg_weighted_by_examples() -> None:
    w = np.zeros(3, np.float32)
    parts = [_partial("h0", [1, 2, 3], 30), _partial("h1", [-1, 0, 1], 10)]
    result = combine(parts, w, make_server_optimizer("fedavg"), ServerOptState())
    np.testing.assert_allclose(result.weights, [0.5, 1.5, 2.5], rtol=1e-6)
    assert (result.num_examples, result.num_updates) == (40, 4)


def test_master_skips_hospitals_without_updates_and_refuses_nothing() -> None:
    w = np.zeros(2, np.float32)
    fedavg = make_server_optimizer("fedavg")
    parts = [_partial("h0", [1, 1], 5), PartialSum("h1", np.zeros(2), 0, 0)]
    assert combine(parts, w, fedavg, ServerOptState()).num_examples == 5
    with pytest.raises(EmptyAggregate):
        combine([PartialSum("h1", np.zeros(2), 0, 0)], w, fedavg, ServerOptState())


def test_master_names_the_hospital_with_the_wrong_size() -> None:
    with pytest.raises(SizeMismatch, match="h7"):
        combine([_partial("h7", [1, 2, 3], 4)], np.zeros(2, np.float32),
                make_server_optimizer("fedavg"), ServerOptState())  # fmt: skip


def test_master_central_noise_is_seeded_and_scaled() -> None:
    w = np.zeros(10_000, np.float32)
    parts = [_partial("h0", [0.0] * 10_000, 10, updates=4)]
    fedavg = make_server_optimizer("fedavg")
    a = combine(parts, w, fedavg, ServerOptState(), noise_multiplier=2.0, clip_norm=1.0,
                rng=np.random.default_rng(3))  # fmt: skip
    b = combine(parts, w, fedavg, ServerOptState(), noise_multiplier=2.0, clip_norm=1.0,
                rng=np.random.default_rng(3))  # fmt: skip
    np.testing.assert_array_equal(a.weights, b.weights)
    assert float(np.std(a.mean_delta)) == pytest.approx(2.0 * 1.0 / 4, rel=0.05)
    with pytest.raises(ValueError, match="random generator"):
        combine(parts, w, fedavg, ServerOptState(), noise_multiplier=1.0, clip_norm=1.0)


def test_master_adaptive_optimizer_keeps_state_across_rounds() -> None:
    w = np.zeros(2, np.float32)
    fedadam = make_server_optimizer("fedadam")
    first = combine([_partial("h0", [1, -1], 8)], w, fedadam, ServerOptState())
    second = combine([_partial("h0", [1, -1], 8)], first.weights, fedadam, first.state)
    assert second.state.step == 2 and second.state.m is not None
    assert second.weights[0] > first.weights[0] > 0 > first.weights[1] > second.weights[1]
