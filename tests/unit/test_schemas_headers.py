"""Upload headers round-trip, and a malformed one is named."""

import pytest

from schemas.errors import ValidationError
from schemas.headers import parse_upload_headers, upload_headers

pytestmark = pytest.mark.unit


def test_upload_headers_round_trip_as_ascii() -> None:
    headers = upload_headers(b"\x01\xff" * 20 + b"\x00", "digits_mlp", 12, 11)
    assert all(v.isascii() for _, v in headers)
    claims = parse_upload_headers(headers)
    assert claims.token == b"\x01\xff" * 20 + b"\x00"
    assert (claims.model, claims.round_id, claims.base_version) == ("digits_mlp", 12, 11)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [("token", b"zz", "not hex"), ("round", b"x", "not a decimal"), ("model", b"\xff", "ASCII")],
)
def test_upload_headers_bad_value_is_named(name: str, value: bytes, problem: str) -> None:
    headers = dict(upload_headers(b"\x01", "m", 1, 0))
    headers[name] = value
    with pytest.raises(ValidationError, match=problem) as info:
        parse_upload_headers(list(headers.items()))
    assert info.value.field == name


def test_upload_headers_missing_one_is_named() -> None:
    headers = [h for h in upload_headers(b"\x01", "m", 1, 0) if h[0] != "base_version"]
    with pytest.raises(ValidationError) as info:
        parse_upload_headers(headers)
    assert info.value.field == "base_version"
