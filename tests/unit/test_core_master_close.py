"""The close step: partials and the base version become the next version record."""

from __future__ import annotations

import numpy as np
import pytest

from flcore.close import BaseVersion, first_version, next_version
from flcore.errors import EmptyAggregate, SizeMismatch
from flcore.master import PartialSum
from flcore.server_opt import ServerOptState, make_server_optimizer

pytestmark = pytest.mark.unit

FEDAVG = make_server_optimizer("fedavg")


def _base(version: int = 4, size: int = 3) -> BaseVersion:
    return BaseVersion("digits_mlp", version, np.zeros(size, np.float32), ServerOptState())


def _partial(hospital: str, delta: float, n: int, loss: float, updates: int = 2) -> PartialSum:
    return PartialSum(hospital, np.full(3, delta * n), n, updates, loss_sum=loss * n)


def test_close_step_numbers_the_version_after_its_base() -> None:
    nxt = next_version(
        _base(version=4), [_partial("h0", 1.0, 10, 0.5)], FEDAVG, round_id=9, created_at_ms=1234
    )

    assert (nxt.model, nxt.version, nxt.parent_version) == ("digits_mlp", 5, 4)
    assert (nxt.round_id, nxt.created_at_ms) == (9, 1234)
    assert nxt.as_base() == BaseVersion("digits_mlp", 5, nxt.weights, nxt.server_state)


def test_close_step_weights_are_fedavg_by_examples() -> None:
    parts = [_partial("h0", 1.0, 30, 0.5), _partial("h1", -1.0, 10, 0.5)]

    nxt = next_version(_base(), parts, FEDAVG, round_id=1, created_at_ms=0)

    np.testing.assert_allclose(nxt.weights, [0.5, 0.5, 0.5], rtol=1e-6)
    assert (nxt.num_examples, nxt.num_updates) == (40, 4)


def test_close_step_train_loss_is_the_example_weighted_mean() -> None:
    parts = [
        _partial("h0", 1.0, 30, loss=0.2),
        _partial("h1", 1.0, 10, loss=1.0),
        PartialSum("h2", np.zeros(3), 0, 0, loss_sum=99.0),  # no updates: not counted
    ]

    nxt = next_version(_base(), parts, FEDAVG, round_id=1, created_at_ms=0)

    assert dict(nxt.metrics) == {"train_loss": pytest.approx((30 * 0.2 + 10 * 1.0) / 40)}


def test_close_step_advances_the_server_optimizer_state() -> None:
    fedadam = make_server_optimizer("fedadam")
    first = next_version(
        _base(), [_partial("h0", 1.0, 8, 0.5)], fedadam, round_id=1, created_at_ms=0
    )

    second = next_version(
        first.as_base(), [_partial("h0", 1.0, 8, 0.5)], fedadam, round_id=2, created_at_ms=1
    )

    assert first.server_state.step == 1 and second.server_state.step == 2
    assert second.version == 6 and np.all(second.weights > first.weights)


def test_close_step_is_pure_and_seeded() -> None:
    base = _base()
    parts = [_partial("h0", 1.0, 10, 0.5)]

    def run(seed: int) -> np.ndarray:
        return next_version(
            base, parts, FEDAVG, round_id=1, created_at_ms=0,
            noise_multiplier=1.0, clip_norm=1.0, rng=np.random.default_rng(seed),
        ).weights  # fmt: skip

    a, b, c = run(7), run(7), run(8)

    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(base.weights, np.zeros(3, np.float32))  # base untouched


def test_close_step_refuses_nothing_and_names_a_misfit() -> None:
    with pytest.raises(EmptyAggregate):
        next_version(_base(), [PartialSum("h0", np.zeros(3), 0, 0)], FEDAVG, round_id=1,
                     created_at_ms=0)  # fmt: skip
    with pytest.raises(SizeMismatch, match="h7"):
        next_version(_base(size=2), [_partial("h7", 1.0, 4, 0.5)], FEDAVG, round_id=1,
                     created_at_ms=0)  # fmt: skip


def test_close_step_first_version_has_no_parent_and_a_fresh_optimizer() -> None:
    first = first_version("digits_mlp", np.ones(3, np.float32), 5)

    assert (first.version, first.parent_version, first.round_id) == (0, -1, 0)
    assert first.server_state == ServerOptState() and dict(first.metrics) == {}
