"""Signed admission tokens: the selector's proof that a device was admitted to a round.

Wire format (41 bytes, big-endian)::

    offset  size  field
    0       1     version, currently 0x01
    1       8     expires_at_ms, unsigned 64-bit milliseconds since the Unix epoch
    9       32    HMAC-SHA256(secret, message)

``message`` is never sent; the verifier rebuilds it from the claims of the
upload it guards, so a token is only valid for the exact (model, round_id,
base_version, device_id, hospital_id) it was issued for::

    message = b"nsfl-admission-v1" + fields(model, round_id, base_version,
                                            device_id, hospital_id, expires_at_ms)

where each string field is ``b"s" + uint32 byte length + UTF-8 bytes`` and each
integer field is ``b"i" + int64``; length prefixes make the encoding
unambiguous. The token is opaque to the device, which echoes it with its upload.
Selectors and aggregators share the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from flcore._canonical import encode_fields
from flcore.errors import InvalidParameter
from flcore.rejection import Rejection, RejectReason

TOKEN_VERSION = 1
TOKEN_SIZE = 41
_DOMAIN = b"nsfl-admission-v1"
_HEADER = struct.Struct(">BQ")


def _mac(
    secret: bytes,
    model: str,
    round_id: int,
    base_version: int,
    device_id: str,
    hospital_id: str,
    expires_at_ms: int,
) -> bytes:
    message = _DOMAIN + encode_fields(
        model, round_id, base_version, device_id, hospital_id, expires_at_ms
    )
    return hmac.new(secret, message, hashlib.sha256).digest()


def issue_token(
    *,
    model: str,
    round_id: int,
    base_version: int,
    device_id: str,
    hospital_id: str,
    expires_at_ms: int,
    secret: bytes,
) -> bytes:
    """Return a 41-byte token admitting ``device_id`` of ``hospital_id`` to one round."""
    if not secret:
        raise InvalidParameter("token secret must not be empty")
    if not 0 <= expires_at_ms < 2**63:
        raise InvalidParameter(f"expires_at_ms out of range: {expires_at_ms}")
    mac = _mac(secret, model, round_id, base_version, device_id, hospital_id, expires_at_ms)
    return _HEADER.pack(TOKEN_VERSION, expires_at_ms) + mac


def verify_token(
    token: bytes,
    *,
    model: str,
    round_id: int,
    base_version: int,
    device_id: str,
    hospital_id: str,
    now_ms: int,
    secret: bytes,
) -> Rejection | None:
    """Return None if ``token`` admits these claims at ``now_ms``, else a Rejection."""
    if len(token) != TOKEN_SIZE:
        return Rejection(
            RejectReason.BAD_TOKEN, f"token is {len(token)} bytes, expected {TOKEN_SIZE}"
        )
    version, expires_at_ms = _HEADER.unpack_from(token)
    if version != TOKEN_VERSION:
        return Rejection(RejectReason.BAD_TOKEN, f"token version {version} is not {TOKEN_VERSION}")
    if not 0 <= expires_at_ms < 2**63:
        return Rejection(RejectReason.BAD_TOKEN, "token expiry out of range")
    expected = _mac(secret, model, round_id, base_version, device_id, hospital_id, expires_at_ms)
    if not hmac.compare_digest(expected, token[_HEADER.size :]):
        return Rejection(RejectReason.BAD_TOKEN, "signature does not match the update's claims")
    # Checked after the signature so an attacker learns nothing from a forged expiry.
    if now_ms > expires_at_ms:
        return Rejection(
            RejectReason.EXPIRED_TOKEN, f"token expired at {expires_at_ms} ms, now {now_ms} ms"
        )
    return None


def token_expiry_ms(token: bytes) -> int | None:
    """Return the (unauthenticated) expiry a token claims, or None if it is malformed."""
    if len(token) != TOKEN_SIZE:
        return None
    version, expires_at_ms = _HEADER.unpack_from(token)
    return int(expires_at_ms) if version == TOKEN_VERSION else None
