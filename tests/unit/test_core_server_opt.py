import numpy as np
import pytest

from flcore.errors import InvalidParameter, SizeMismatch
from flcore.server_opt import (
    SERVER_OPTIMIZERS,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedYogi,
    ServerOptState,
    make_server_optimizer,
)

pytestmark = pytest.mark.unit

X = np.array([1.0, -2.0, 0.5], np.float32)
D = np.array([0.1, -0.2, 0.0], np.float32)


def test_fedavg_eta_one_adds_mean_delta() -> None:
    new, state = FedAvg().step(X, D, ServerOptState())
    np.testing.assert_allclose(new, X + D, rtol=1e-7)
    assert state.step == 1 and state.m is None


def test_fedavg_server_lr_scales_step() -> None:
    new, _ = make_server_optimizer("fedavg", eta=0.5).step(X, D, ServerOptState())
    np.testing.assert_allclose(new, X + 0.5 * D, rtol=1e-7)


def test_fedadam_first_step_matches_hand_computation() -> None:
    eta, b1, b2, tau = 0.01, 0.9, 0.99, 1e-3
    new, state = FedAdam(eta=eta).step(X, D, ServerOptState())
    d = D.astype(np.float64)
    m = (1 - b1) * d
    v = b2 * tau**2 + (1 - b2) * d**2
    expected = X + eta * m / (np.sqrt(v) + tau)
    np.testing.assert_allclose(new, expected, rtol=1e-6)
    # Concretely for coordinate 0: m=0.01, v=0.99e-6+1e-4, step ~= 0.01*0.01/0.011049 ~= 0.00905
    assert new[0] == pytest.approx(1.0 + 0.01 * 0.01 / (np.sqrt(0.99e-6 + 1e-4) + 1e-3), rel=1e-6)
    assert new[2] == X[2]  # zero delta, zero step
    np.testing.assert_allclose(state.m, m)
    np.testing.assert_allclose(state.v, v)


def test_fedyogi_and_fedadagrad_second_moment_rules() -> None:
    tau = 1e-3
    d2 = D.astype(np.float64) ** 2
    _, yogi = FedYogi().step(X, D, ServerOptState())
    v0 = np.full(3, tau**2)
    np.testing.assert_allclose(yogi.v, v0 - 0.01 * d2 * np.sign(v0 - d2))
    _, ada = FedAdagrad().step(X, D, ServerOptState())
    np.testing.assert_allclose(ada.v, v0 + d2)


def test_adaptive_optimizers_move_toward_delta_over_steps() -> None:
    for name in ("fedadam", "fedyogi", "fedadagrad"):
        opt = make_server_optimizer(name)
        x, state = X.copy(), ServerOptState()
        for _ in range(5):
            x, state = opt.step(x, D, state)
        assert x[0] > X[0] and x[1] < X[1], name
        assert state.step == 5


def test_state_round_trips_through_arrays_and_resumes_identically() -> None:
    opt = make_server_optimizer("fedadam", eta=0.03)
    x1, s1 = opt.step(X, D, ServerOptState())
    restored = ServerOptState.from_arrays(dict(s1.to_arrays()))
    a, _ = opt.step(x1, D, s1)
    b, _ = opt.step(x1, D, restored)
    np.testing.assert_array_equal(a, b)
    assert restored.step == 1


def test_step_does_not_mutate_inputs() -> None:
    x = X.copy()
    _, s1 = FedAdam().step(x, D, ServerOptState())
    m_before = s1.m.copy()
    FedAdam().step(x, D, s1)
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(s1.m, m_before)


def test_make_server_optimizer_unknown_name_lists_choices() -> None:
    with pytest.raises(InvalidParameter, match=r"'fedsgd'.*fedavg, fedadagrad, fedadam, fedyogi"):
        make_server_optimizer("fedsgd")
    assert set(SERVER_OPTIMIZERS) == {"fedavg", "fedadagrad", "fedadam", "fedyogi"}
    assert make_server_optimizer("FedYogi").name == "fedyogi"


def test_make_server_optimizer_bad_hparams_named() -> None:
    with pytest.raises(InvalidParameter, match="beta1"):
        make_server_optimizer("fedadam", beta1=1.0)
    with pytest.raises(InvalidParameter, match="momentum"):
        make_server_optimizer("fedavg", momentum=0.9)
    with pytest.raises(InvalidParameter, match="eta"):
        make_server_optimizer("fedyogi", eta=0.0)


def test_size_mismatch_raises() -> None:
    with pytest.raises(SizeMismatch):
        FedAdam().step(X, D[:2], ServerOptState())
    _, s = FedAdam().step(X, D, ServerOptState())
    with pytest.raises(SizeMismatch):
        FedAdam().step(X[:2], D[:2], s)
