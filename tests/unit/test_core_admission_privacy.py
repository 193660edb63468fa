import numpy as np
import pytest

from flcore.admission import (
    Admit,
    DeclineReason,
    RetryAfter,
    admission_probability,
    admit,
    stable_uniform,
)
from flcore.errors import InvalidParameter
from flcore.privacy import add_gaussian_noise, central_noise_stddev, clip_l2, l2_norm

pytestmark = pytest.mark.unit

NOW, SEL_DEADLINE = 10_000, 70_000


def _admit(device: str, p: float, **over: object) -> Admit | RetryAfter:
    kw = dict(
        device_id=device,
        hospital_id="h0",
        model="digits",
        round_id=7,
        admission_probability=p,
        eligible=True,
        now_ms=NOW,
        selection_deadline_ms=SEL_DEADLINE,
    )
    kw.update(over)
    return admit(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("p", [0.1, 0.3, 0.77])
def test_admission_rate_close_to_probability(p: float) -> None:
    n = 20_000
    admitted = sum(isinstance(_admit(f"d{i}", p), Admit) for i in range(n))
    # 4 sigma of a binomial: fails by chance about once in 30,000 runs (and it is deterministic).
    assert abs(admitted / n - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_admission_stable_per_device_and_changes_with_round() -> None:
    first = [_admit(f"d{i}", 0.5) for i in range(200)]
    again = [_admit(f"d{i}", 0.5, now_ms=NOW + 5_000) for i in range(200)]
    assert [type(a) for a in first] == [type(a) for a in again]
    next_round = [_admit(f"d{i}", 0.5, round_id=8) for i in range(200)]
    assert [type(a) for a in first] != [type(a) for a in next_round]


def test_admission_probability_one_admits_all_and_zero_none() -> None:
    assert all(isinstance(_admit(f"d{i}", 1.0), Admit) for i in range(500))
    assert not any(isinstance(_admit(f"d{i}", 0.0), Admit) for i in range(500))


def test_ineligible_and_closed_selection_get_reasons() -> None:
    r = _admit("d1", 1.0, eligible=False)
    assert isinstance(r, RetryAfter) and r.reason is DeclineReason.NOT_ELIGIBLE
    r = _admit("d1", 1.0, now_ms=SEL_DEADLINE)
    assert isinstance(r, RetryAfter) and r.reason is DeclineReason.SELECTION_CLOSED
    r = _admit("d1", 0.0)
    assert isinstance(r, RetryAfter) and r.reason is DeclineReason.NOT_SELECTED


def test_retry_after_never_in_the_past_and_spread() -> None:
    for now in (0, NOW, SEL_DEADLINE - 1, SEL_DEADLINE, SEL_DEADLINE + 10**6):
        for i in range(300):
            r = _admit(f"d{i}", 0.0, now_ms=now)
            assert isinstance(r, RetryAfter)
            assert r.at_ms > now
            if now < SEL_DEADLINE:
                assert r.at_ms >= SEL_DEADLINE
    spread = {_admit(f"d{i}", 0.0).at_ms for i in range(300)}  # type: ignore[union-attr]
    assert len(spread) > 250  # jitter spreads the herd


def test_stable_uniform_in_unit_interval_and_salted() -> None:
    draws = [stable_uniform("m", 1, f"d{i}") for i in range(1000)]
    assert all(0 <= d < 1 for d in draws)
    assert stable_uniform("m", 1, "d0") == stable_uniform("m", 1, "d0")
    assert stable_uniform("m", 1, "d0") != stable_uniform("m", 1, "d0", salt="retry")


def test_admission_probability_from_goal_and_checkins() -> None:
    assert admission_probability(10, expected_checkins=100) == pytest.approx(0.13)
    assert admission_probability(10, expected_checkins=100, over_selection=2.0) == 0.2
    assert admission_probability(10, expected_checkins=5) == 1.0
    assert admission_probability(10, expected_checkins=0) == 1.0
    assert admission_probability(10, expected_checkins=float("nan")) == 1.0
    with pytest.raises(InvalidParameter):
        admission_probability(0, expected_checkins=10)
    with pytest.raises(InvalidParameter):
        admission_probability(5, expected_checkins=10, over_selection=0.5)


def test_clip_scales_down_only_when_over_bound() -> None:
    rng = np.random.default_rng(0)
    u = rng.normal(size=100).astype(np.float32) * 10
    clipped, norm = clip_l2(u, 1.0)
    assert norm == pytest.approx(l2_norm(u))
    assert l2_norm(clipped) <= 1.0
    assert l2_norm(clipped) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(clipped / l2_norm(clipped), u / norm, rtol=1e-5)
    small = np.full(4, 0.1, np.float32)
    np.testing.assert_array_equal(clip_l2(small, 1.0)[0], small)
    np.testing.assert_array_equal(clip_l2(u, 0.0)[0], u)
    assert clipped.dtype == np.float32
    with pytest.raises(InvalidParameter):
        clip_l2(u, -1.0)


def test_gaussian_noise_seeded_and_scaled() -> None:
    v = np.zeros(50_000, np.float32)
    a = add_gaussian_noise(v, 0.5, np.random.default_rng(1))
    b = add_gaussian_noise(v, 0.5, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.std() == pytest.approx(0.5, rel=0.02)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(add_gaussian_noise(v, 0.0, np.random.default_rng(1)), v)
    assert central_noise_stddev(1.0, 2.0, 10) == pytest.approx(0.2)
    with pytest.raises(InvalidParameter):
        central_noise_stddev(1.0, 2.0, 0)
