import dataclasses

import numpy as np
import pytest

from flcore.blockwise import BLOCK
from flcore.errors import InvalidParameter
from flcore.rejection import RejectReason
from flcore.tokens import TOKEN_SIZE, issue_token, token_expiry_ms, verify_token
from flcore.validation import RoundFacts, UpdateClaims, validate_update

pytestmark = pytest.mark.unit

SECRET = b"s" * 32
CLAIMS = dict(model="digits", round_id=4, base_version=3, device_id="h0-d1", hospital_id="h0")
NOW = 1_000_000


def _token(**over: object) -> bytes:
    kw = {**CLAIMS, "expires_at_ms": NOW + 60_000, "secret": SECRET, **over}
    return issue_token(**kw)  # type: ignore[arg-type]


def test_token_round_trip_is_compact_and_valid() -> None:
    token = _token()
    assert len(token) == TOKEN_SIZE == 41
    assert verify_token(token, **CLAIMS, now_ms=NOW, secret=SECRET) is None
    assert token_expiry_ms(token) == NOW + 60_000


@pytest.mark.parametrize(
    "field,value",
    [
        ("model", "cancer"),
        ("round_id", 5),
        ("base_version", 2),
        ("device_id", "h0-d2"),
        ("hospital_id", "h1"),
    ],
)
def test_token_bound_to_every_claim(field: str, value: object) -> None:
    rej = verify_token(_token(), **{**CLAIMS, field: value}, now_ms=NOW, secret=SECRET)
    assert rej is not None and rej.reason is RejectReason.BAD_TOKEN


def test_token_tampered_bytes_rejected() -> None:
    token = _token()
    for i in (0, 5, 20, 40):
        bad = bytearray(token)
        bad[i] ^= 0x01
        rej = verify_token(bytes(bad), **CLAIMS, now_ms=NOW, secret=SECRET)
        assert rej is not None and rej.reason is RejectReason.BAD_TOKEN, i
    for bad in (b"", token[:-1], token + b"x"):
        rej = verify_token(bad, **CLAIMS, now_ms=NOW, secret=SECRET)
        assert rej is not None and rej.reason is RejectReason.BAD_TOKEN


def test_token_wrong_secret_rejected() -> None:
    rej = verify_token(_token(), **CLAIMS, now_ms=NOW, secret=b"other-secret-xxxxxxxx")
    assert rej is not None and rej.reason is RejectReason.BAD_TOKEN


def test_token_expiry_inclusive_then_rejected() -> None:
    token = _token(expires_at_ms=NOW)
    assert verify_token(token, **CLAIMS, now_ms=NOW, secret=SECRET) is None
    rej = verify_token(token, **CLAIMS, now_ms=NOW + 1, secret=SECRET)
    assert rej is not None and rej.reason is RejectReason.EXPIRED_TOKEN


def test_issue_token_refuses_empty_secret() -> None:
    with pytest.raises(InvalidParameter):
        _token(secret=b"")


def test_token_fields_cannot_be_shifted_between_strings() -> None:
    # "ab"+"c" vs "a"+"bc" must sign differently (length-prefixed encoding).
    a = _token(device_id="ab", hospital_id="c")
    rej = verify_token(
        a, **{**CLAIMS, "device_id": "a", "hospital_id": "bc"}, now_ms=NOW, secret=SECRET
    )
    assert rej is not None


SIZE = 6
FACTS = RoundFacts(
    model="digits",
    hospital_id="h0",
    round_id=4,
    base_version=3,
    is_open=True,
    expected_size=SIZE,
    norm_bound=2.0,
    layer_sizes=(("w", 4), ("b", 2)),
)


def _update(**over: object) -> UpdateClaims:
    fields = {
        **CLAIMS,
        "num_examples": 10,
        "token": _token(),
        "delta": np.full(SIZE, 0.1, np.float32),
    }
    fields.update(over)
    return UpdateClaims(**fields)  # type: ignore[arg-type]


def _check(update: UpdateClaims, facts: RoundFacts = FACTS, seen: frozenset[str] = frozenset()):
    return validate_update(update, facts, seen, now_ms=NOW, secret=SECRET)


def test_valid_update_accepted() -> None:
    assert _check(_update()) is None


def test_every_rejection_reason() -> None:
    def token_for(**c: object) -> bytes:
        return _token(**c)

    cases = {
        RejectReason.BAD_TOKEN: (_update(token=b"\x01" * TOKEN_SIZE), FACTS, frozenset()),
        RejectReason.EXPIRED_TOKEN: (
            _update(token=_token(expires_at_ms=NOW - 1)),
            FACTS,
            frozenset(),
        ),
        RejectReason.WRONG_MODEL: (
            _update(model="cancer", token=token_for(model="cancer")),
            FACTS,
            frozenset(),
        ),
        RejectReason.WRONG_HOSPITAL: (
            _update(hospital_id="h1", token=token_for(hospital_id="h1")),
            FACTS,
            frozenset(),
        ),
        RejectReason.CLOSED_ROUND: (
            _update(),
            dataclasses.replace(FACTS, is_open=False),
            frozenset(),
        ),
        RejectReason.UNKNOWN_ROUND: (
            _update(round_id=5, token=token_for(round_id=5)),
            FACTS,
            frozenset(),
        ),
        RejectReason.WRONG_BASE_VERSION: (
            _update(base_version=2, token=token_for(base_version=2)),
            FACTS,
            frozenset(),
        ),
        RejectReason.DUPLICATE: (_update(), FACTS, frozenset({"h0-d1"})),
        RejectReason.NO_EXAMPLES: (_update(num_examples=0), FACTS, frozenset()),
        RejectReason.TOO_MANY_EXAMPLES: (
            _update(num_examples=10**9),
            dataclasses.replace(FACTS, max_examples=100_000),
            frozenset(),
        ),
        RejectReason.BAD_SHAPE: (_update(delta=np.zeros(SIZE + 1, np.float32)), FACTS, frozenset()),
        RejectReason.NON_FINITE: (
            _update(delta=np.array([0, 0, 0, 0, np.nan, 0], np.float32)),
            FACTS,
            frozenset(),
        ),
        RejectReason.NORM_EXCEEDED: (
            _update(delta=np.full(SIZE, 1.0, np.float32)),
            FACTS,
            frozenset(),
        ),
    }
    # implausible_count is a partial's (flcore.partial_check, tests of the coordinator).
    assert set(cases) == set(RejectReason) - {RejectReason.IMPLAUSIBLE_COUNT}
    for reason, (update, facts, seen) in cases.items():
        rej = _check(update, facts, seen)
        assert rej is not None and rej.reason is reason, (reason, rej)
        assert rej.detail


def test_previous_round_is_closed_round() -> None:
    rej = _check(_update(round_id=3, token=_token(round_id=3)))
    assert rej is not None and rej.reason is RejectReason.CLOSED_ROUND


def test_non_finite_detail_names_the_layer() -> None:
    rej = _check(_update(delta=np.array([0, 0, 0, 0, 0, np.inf], np.float32)))
    assert rej is not None and "b[1]" in rej.detail


def test_shape_checks_cover_2d_and_integer_arrays() -> None:
    for delta in (np.zeros((2, 3), np.float32), np.zeros(SIZE, np.int32)):
        rej = _check(_update(delta=delta))
        assert rej is not None and rej.reason is RejectReason.BAD_SHAPE


def test_norm_bound_zero_disables_check_and_clipped_update_passes() -> None:
    big = np.full(SIZE, 10.0, np.float32)
    assert _check(_update(delta=big), dataclasses.replace(FACTS, norm_bound=0.0)) is None
    exactly = np.full(SIZE, np.float32(2.0 / np.sqrt(SIZE)), np.float32)
    assert _check(_update(delta=exactly)) is None


def test_forged_update_rejected_as_bad_token_before_round_facts_leak() -> None:
    # Wrong model *and* wrong token: the sender learns only that the token is bad.
    rej = _check(_update(model="cancer"))
    assert rej is not None and rej.reason is RejectReason.BAD_TOKEN


def test_large_finite_update_is_not_taken_for_non_finite() -> None:
    # 3e19 squared overflows float32: the fast block norm is inf, the values are not.
    big = np.array([3e19, 0, 0, 0, 0, 0], np.float32)
    assert _check(_update(delta=big), dataclasses.replace(FACTS, norm_bound=0.0)) is None
    rej = _check(_update(delta=big))
    assert rej is not None and rej.reason is RejectReason.NORM_EXCEEDED and "3e+19" in rej.detail


def test_non_finite_found_past_the_first_block() -> None:
    size = 3 * BLOCK + 5
    delta = np.zeros(size, np.float32)
    delta[2 * BLOCK + 7] = np.nan
    facts = dataclasses.replace(FACTS, expected_size=size, layer_sizes=())
    rej = _check(_update(delta=delta), facts)
    assert rej is not None and rej.reason is RejectReason.NON_FINITE
    assert f"element {2 * BLOCK + 7}" in rej.detail
